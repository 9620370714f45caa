"""User text stays text: what people (and the cloud) wrote is escaped before it goes into mrkdwn, and ids
are taken only in their documented shapes."""

from __future__ import annotations

import re

USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
REQUEST_ID = re.compile(r"AS-[0-9A-Z]{8}")
LOOK_ALIKE_BACKTICK = "\u02cb"  # MODIFIER LETTER GRAVE ACCENT
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_mrkdwn(text: object) -> str:
    """Slack's three control characters escaped, so `<!channel>`, `<@U…>` and `<https://…|label>` show as typed."""
    return str(text).translate(_MRKDWN)


def code(text: object) -> str:
    """Inline code that the text cannot leave: a backtick inside would end it, so it becomes a look-alike."""
    return f"`{escape_mrkdwn(str(text).replace('`', LOOK_ALIKE_BACKTICK))}`"


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None


def mention(user_id: object) -> str:
    """`<@U…>` for a Slack user id; anything else is shown as the text it is."""
    return f"<@{user_id}>" if is_user_id(user_id) else escape_mrkdwn(user_id)


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID.fullmatch(value) is not None
