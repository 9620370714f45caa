"""The Slack side: Bolt listeners, Block Kit views and messages, and the rate-limited writer."""
