"""When the database is away: what people are told, and how it is logged.

Every process meets an outage at once in many places (each Slack request, each tracker and courier tick,
each heartbeat). Each place says so once a minute, in one line without a traceback, with how many
failures it left unsaid; nobody gets a traceback per request.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import exc

log = logging.getLogger(__name__)

SENTENCE = "The bot can't reach its database right now; nothing was changed. Try again in a minute."
EVERY_SECONDS = 60.0
# What a database that cannot be reached or used raises: a refused or dropped connection, a pool with no
# connection to give, a file that cannot be opened. A bug in a query (ProgrammingError, IntegrityError) is not one.
_OUTAGES = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


def is_database_outage(error: BaseException | None) -> bool:
    """The error, or one it was raised from, says the database cannot be reached."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _OUTAGES) or (isinstance(error, exc.DBAPIError) and error.connection_invalidated):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def describe(error: BaseException) -> str:
    """The error's kind and the first line of what the driver said (never the statement or its values)."""
    original = getattr(error, "orig", None) or error
    first_line = (str(original).strip().splitlines() or [""])[0][:200]
    return f"{type(original).__name__}: {first_line}" if first_line else type(original).__name__


class OutageLog:
    """One warning per kind of failure per minute."""

    def __init__(self, every_seconds: float = EVERY_SECONDS) -> None:
        self._every = every_seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._unsaid: dict[str, int] = {}

    def report(self, where: str, error: BaseException) -> None:
        """The database failed `where` (a few words: "answering a slash command", "the tracker's cycle")."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(where)
            if last is not None and now - last < self._every:
                self._unsaid[where] = self._unsaid.get(where, 0) + 1
                return
            self._last[where] = now
            unsaid = self._unsaid.pop(where, 0)
        since = f" ({unsaid} more since the last line)" if unsaid else ""
        log.warning("the database cannot be reached (%s) while %s%s; said at most once a minute while it lasts",
                    describe(error), where, since)

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._unsaid.clear()


# One per process: every part of it reports here, so each kind of failure is said once a minute in all.
OUTAGES = OutageLog()
