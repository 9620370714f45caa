"""Logging set-up, with every secret value redacted from every record before any handler sees it.

Redaction happens in the log-record factory, so it covers third-party loggers (httpx, httpcore,
slack_sdk) and any handler, including ones added later, such as a test's capture handler.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"
# Header values that are credentials, whatever their value (dynamic tokens included).
_HEADER_PATTERN = re.compile(
    r"(?i)(x-subject-token|x-auth-token|x-security-token|authorization|x-slack-signature)"
    r"""(['"]?\s*[:,=]\s*b?['"]?)([^'"\r\n]+)"""
)

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
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


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
        record.msg, record.args = redact(message), None
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


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    install_redaction(secrets)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    numeric = logging.getLevelName(level)
    # Transport internals are noise at INFO; they stay redacted at DEBUG too.
    for noisy in ("httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.INFO))
    for chatty in CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.getLogger("slack_bolt.AsyncApp").addFilter(_not_the_expected_bolt_warning)
