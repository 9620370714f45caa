"""Logging set-up: every secret value redacted, and every control character escaped, in every record
before any handler sees it.

Both happen in the log-record factory, so they cover third-party loggers (httpx, httpcore, slack_sdk)
and any handler, including ones added later, such as a test's capture handler. Escaping newlines
means a value from outside (a payload field, a cloud message) cannot start a line of its own that
looks like the bot's. `LOG_FORMAT=json` writes one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

MASK = "[redacted]"
# Header values that are credentials, whatever their value (dynamic tokens included).
_HEADER_PATTERN = re.compile(
    r"(?i)(x-subject-token|x-auth-token|x-security-token|authorization|x-slack-signature)"
    r"""(['"]?\s*[:,=]\s*b?['"]?)([^'"\r\n]+)"""
)

# Socket Mode's WebSocket URL carries a one-time `ticket` that lets whoever holds it receive the app's
# events: slack_sdk logs the URL at DEBUG (the apps.connections.open answer), aiohttp in its errors.
_TICKET_PATTERN = re.compile(r"(?i)([?&]ticket=)[^&\s'\"\\]+")

# C0 and C1 controls (newline, carriage return, escape, …) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def add_secret(value: str | None) -> None:
    """Register a value that must never appear in a log line (keys, tokens, passwords)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    text = _HEADER_PATTERN.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _TICKET_PATTERN.sub(lambda m: m.group(1) + MASK, text)
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def escape_controls(text: str) -> str:
    """One line whatever the text holds: newlines as `\\n`, other control characters as `\\xNN`."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode()), text)


def install_redaction(secrets: Iterable[str] = ()) -> None:
    global _installed
    for value in secrets:
        add_secret(value)
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call elsewhere must not break logging
            return record
        record.msg, record.args = escape_controls(redact(message)), None
        return record

    logging.setLogRecordFactory(factory)


# Libraries whose INFO lines narrate their own work (each HTTP request, each migration step, each
# Socket Mode session): shown at DEBUG only, so INFO is the bot's own story.
CHATTY_LIBRARIES = ("alembic", "httpx", "slack_sdk", "slack_bolt", "aiohttp.access", "uvicorn.error")
# Bolt warns that the token is unused whenever SLACK_BOT_TOKEN is in the environment and a client is
# given, which the bot always does on purpose (one client with its connection pool).
def _not_the_expected_bolt_warning(record: logging.LogRecord) -> bool:
    from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

    return record.getMessage() != warning_client_prioritized_and_token_skipped()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`; a traceback keeps its lines (it is read by people) and is redacted as
    the message is: an exception's text can hold a URL, a header or a value the record factory never saw."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, as one string)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, secrets: Iterable[str] = (), fmt: Literal["text", "json"] = "text") -> None:
    install_redaction(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    numeric = logging.getLevelName(level)
    # Transport internals are noise at INFO; they stay redacted at DEBUG too.
    for noisy in ("httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.INFO))
    for chatty in CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.getLogger("slack_bolt.AsyncApp").addFilter(_not_the_expected_bolt_warning)
