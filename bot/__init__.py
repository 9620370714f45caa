"""appserver-bot: order Huawei Cloud Workspace app servers from Slack."""

__version__ = "0.1.0"
