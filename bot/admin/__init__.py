"""`appserver-bot admin`: the operator's tools for requests that are stuck or need a person.

Reading (`list`, `show`) only reads. Every change (`cancel`, `fail`, `repost`, `requeue`) is audited as the
operator, is a compare-and-set like every other change, and tells people through the Slack news outbox the
courier delivers: the command itself never calls Slack.
"""
