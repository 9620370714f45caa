"""What the bot may do in Slack: the scopes it asks for, whether Slack refuses a token, and whether it can
post in a channel. Shared by the checks at start and by `appserver-bot doctor`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

# The bot scopes the manifests ask for, and why (tests keep manifests/*.yaml equal to this).
BOT_SCOPES: Mapping[str, str] = {
    "commands": "the /appserver command",
    "chat:write": "approval cards, the request's thread, outcomes and direct messages",
    "chat:write.public": "posting in public channels nobody invited the bot to (APPROVAL_CHANNEL, NOTIFY_CHANNEL, "
                         "the channel where /appserver was typed)",
    "usergroups:read": "approver user groups (S…) in APPROVERS",
    "users:read": "checking that each approver in APPROVERS exists",
    "channels:read": "checking that the bot can post in a public APPROVAL_CHANNEL and NOTIFY_CHANNEL",
    "groups:read": "checking that the bot was invited to a private APPROVAL_CHANNEL or NOTIFY_CHANNEL",
    # A post whose answer never came (a timeout, a cut connection) is looked for before it is sent again.
    "channels:history": "finding a post whose answer from Slack was lost, in a public channel, before posting it again",
    "groups:history": "the same in a private channel",
    "im:history": "the same in a requester's direct messages",
    "im:write": "opening the requester's direct messages to look in them",
}

# Answers that mean "try again later"; any other error from Slack means the token itself is refused.
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})


def error_code(error: SlackApiError) -> str:
    return str(error.response.get("error") or f"HTTP {error.response.status_code}")


def refused(error: SlackApiError) -> bool:
    """Slack answered, and the answer is no (a bad, revoked or wrong kind of token)."""
    return error.response.status_code < 500 and error_code(error) not in TRANSIENT_ERRORS


def granted_scopes(headers: Mapping[str, Any] | None) -> frozenset[str] | None:
    """The scopes Slack lists in `x-oauth-scopes` on every Web API answer (None when it does not say)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "x-oauth-scopes"), None)
    if value is None:
        return None
    return frozenset(s.strip() for s in str(value).split(",") if s.strip())


@dataclass(frozen=True)
class ChannelAccess:
    setting: str
    channel: str
    can_post: bool
    detail: str

    @property
    def sentence(self) -> str:
        return f"{self.setting} {self.channel}: {self.detail}"


async def channel_access(client: AsyncWebClient, setting: str, channel: str,
                         scopes: frozenset[str] | None) -> ChannelAccess:
    """Whether the bot can post in `channel`, found with read calls only (`conversations.info`)."""
    invite = "invite the bot there with /invite"
    try:
        response = await client.conversations_info(channel=channel)
    except SlackApiError as error:
        code = error_code(error)
        if code == "channel_not_found":
            return ChannelAccess(setting, channel, False, f"not found, or a private channel the bot is not in: "
                                                          f"{invite}, or fix the id")
        if code == "missing_scope":
            return ChannelAccess(setting, channel, False, "cannot be checked: the app lacks channels:read and "
                                                          "groups:read; reinstall it from its manifest")
        return ChannelAccess(setting, channel, False, f"cannot be checked: Slack answered {code}")
    info: dict[str, Any] = response.get("channel") or {}
    if info.get("is_archived"):
        return ChannelAccess(setting, channel, False, "is archived: pick another channel")
    if info.get("is_member"):
        return ChannelAccess(setting, channel, True, "the bot is a member")
    if not info.get("is_private") and (scopes is None or "chat:write.public" in scopes):
        return ChannelAccess(setting, channel, True, "public, the bot posts there with chat:write.public")
    return ChannelAccess(setting, channel, False, f"the bot is not a member: {invite}")
