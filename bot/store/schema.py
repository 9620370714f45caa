"""Schema migrations with Alembic: `appserver-bot migrate`, and the check made at every start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from bot.settings import StartupError
from bot.store.db import DatabaseUnavailable, explain, is_sqlite

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaBehind(StartupError):
    """The database is not at the bot's schema version; the message tells the operator what to do."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False when the database was migrated by a newer bot than this one."""
        return self.current is None or _revision_exists(self.current)

    @property
    def sentence(self) -> str:
        if self.up_to_date:
            return f"The database schema is up to date ({self.head})."
        if not self.known:
            return (f"The database in DATABASE_URL is at schema {self.current}, newer than this version of the bot "
                    f"knows (it needs {self.head}): run the newer version, or go back with its "
                    f"`appserver-bot migrate --to {self.head}` first.")
        found = f"at {self.current}" if self.current else "empty"
        return (f"The database in DATABASE_URL is {found} but this bot needs schema {self.head}: "
                "run `appserver-bot migrate`.")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _revision_exists(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except (ResolutionError, CommandError):
        return False


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


@contextmanager
def _database_errors_as_sentences(engine: Engine) -> Iterator[None]:
    try:
        yield
    except (DBAPIError, OSError) as error:
        raise DatabaseUnavailable(explain(error, engine)) from error


def schema_status(engine: Engine) -> SchemaStatus:
    with _database_errors_as_sentences(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return SchemaStatus(current, head_revision())


def revisions() -> list[str]:
    """Every revision this bot knows, oldest first."""
    return [r.revision for r in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))]


def migrate(engine: Engine, to: str | None = None) -> SchemaStatus:
    """Upgrade to the head, or up or down to `to` (a revision, `head`, or `base` for an empty schema)."""
    status = schema_status(engine)
    if not status.known:
        raise SchemaBehind(status.sentence)
    known = revisions()
    target = {None: status.head, "head": status.head, "base": None}.get(to, to)
    if target is not None and target not in known:
        raise SchemaBehind(f"{to} is not a schema revision this version knows ({', '.join(known)}): "
                           "name one of them, or `base`.")
    here = -1 if status.current is None else known.index(status.current)
    there = -1 if target is None else known.index(target)
    config = alembic_config()
    with _database_errors_as_sentences(engine), engine.connect() as connection, \
            _foreign_keys_checked_after(connection), connection.begin():
        config.attributes["connection"] = connection
        if there > here:
            command.upgrade(config, known[there])
        elif there < here:
            command.downgrade(config, "base" if target is None else target)
    return schema_status(engine)


@contextmanager
def _foreign_keys_checked_after(connection: Connection) -> Iterator[None]:
    """SQLite changes a column by copying its table, and cannot drop a table other rows point at while it
    enforces foreign keys (the bot's connections do): enforcement is off during the migration (SQLite ignores
    the pragma inside a transaction, so it is set before), and every reference is checked before it is back on."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaBehind(f"The migration left {len(broken)} row(s) pointing at rows that are gone (the first in "
                               f"table {broken[0][0]}); restore the database from a backup.")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def ensure_schema(engine: Engine) -> SchemaStatus:
    """SQLite is migrated on start (one process owns it); PostgreSQL must be migrated by the operator."""
    status = schema_status(engine)
    if status.up_to_date:
        return status
    if is_sqlite(engine) and status.known:
        return migrate(engine)
    raise SchemaBehind(status.sentence)
