"""Schema migrations with Alembic: `appserver-bot migrate`, and the check made at every start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from bot.store.db import is_sqlite

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaBehind(Exception):
    """The database is not at the bot's schema version; the message tells the operator what to do."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def sentence(self) -> str:
        if self.up_to_date:
            return f"The database schema is up to date ({self.head})."
        found = f"at {self.current}" if self.current else "empty"
        return f"The database schema is {found} but this bot needs {self.head}: run `appserver-bot migrate`."


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return SchemaStatus(current, head_revision())


def migrate(engine: Engine) -> SchemaStatus:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return schema_status(engine)


def ensure_schema(engine: Engine) -> SchemaStatus:
    """SQLite is migrated on start (one process owns it); PostgreSQL must be migrated by the operator."""
    status = schema_status(engine)
    if status.up_to_date:
        return status
    if is_sqlite(engine):
        return migrate(engine)
    raise SchemaBehind(status.sentence)
