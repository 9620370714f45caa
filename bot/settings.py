"""Configuration from the environment (and a `.env` file), with the contract's variable names."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///appserver-bot.db"
# The drivers the bot ships with: SQLite (standard library) and PostgreSQL through psycopg 3.
SUPPORTED_DATABASES = frozenset({"sqlite", "sqlite+pysqlite", "postgres", "postgresql", "postgresql+psycopg"})
DATABASE_EXAMPLES = "sqlite:///appserver-bot.db or postgresql://user:password@host:5432/dbname"


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one sentence for the operator."""


class StartupError(Exception):
    """Something outside the settings stops the program (a database behind); one sentence for the operator."""


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        # `NAME=` (as left in a copied .env.example) means unset, not an empty token.
        env_ignore_empty=True,
    )

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Who decides, and where messages go
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Guardrails (bot/policy.py): who may ask, and how many servers before a person has to approve
    requesters: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_servers_per_request: int = Field(default=20, ge=1, le=100)
    auto_approve_max_servers: int = Field(default=5, ge=0, le=100)
    max_servers_per_user_per_day: int | None = Field(default=None, ge=1)
    # A pay-per-use request estimated above this a month (hourly price x 730), or with no price, waits for a person.
    auto_approve_max_monthly_cost: Decimal | None = Field(default=None, gt=0)
    # Requests one person may have waiting for an approver or for payment at once; one more that would wait is refused.
    max_pending_per_user: int = Field(default=5, ge=1, le=1000)
    approval_channel: str | None = None
    notify_channel: str | None = None
    postpaid_requires_approval: bool = False
    approval_ttl_hours: float = Field(default=24.0, gt=0)
    # The approvers are reminded of a request that waits this long, up to 3 times, spaced the same.
    approval_remind_after_minutes: float = Field(default=60.0, gt=0)
    # The Workspace console the final reply links to; "{region}" is replaced by HUAWEICLOUD_REGION.
    console_url: str = "https://console.huaweicloud.com/console/?region={region}"

    # Cloud credentials (the official SDK's names)
    huaweicloud_sdk_ak: SecretStr | None = None
    huaweicloud_sdk_sk: SecretStr | None = None
    huaweicloud_sdk_security_token: SecretStr | None = None
    huaweicloud_sdk_project_id: str | None = None
    huaweicloud_sdk_domain_id: str | None = None
    huaweicloud_iam_user: str | None = None
    huaweicloud_iam_password: SecretStr | None = None
    huaweicloud_iam_domain: str | None = None

    # Cloud endpoints
    huaweicloud_region: str = "cn-north-4"
    workspace_endpoint: str | None = None
    bss_endpoint: str | None = None
    huaweicloud_sdk_iam_endpoint: str | None = None
    vpc_endpoint: str | None = None
    sts_endpoint: str | None = None  # asked for the account id when IAM lists none
    cloud_retry_base_seconds: float = Field(default=2.0, ge=0)
    cloud_retry_attempts: int = Field(default=4, ge=1, le=10)
    cloud_read_timeout_seconds: float = Field(default=35.0, gt=0)

    # Storage
    database_url: str = DEFAULT_DATABASE_URL
    submit_lease_seconds: float = Field(default=90.0, gt=0)

    # Tracking
    poll_interval_seconds: float = Field(default=30.0, gt=0)  # the slowest any request is polled
    poll_first_delay_seconds: float = Field(default=2.0, ge=0)
    # Job and order polls a second, shared by the requests in flight: half the 10/s that Huawei documents
    # for its order API and that its gateway's throttling message shows, leaving room for retries.
    poll_budget_per_second: float = Field(default=5.0, gt=0)
    # After an order completes, how long its servers may take to be listed before the missing ones count as
    # not opened (billing unsubscribes and refunds those).
    order_resources_grace_minutes: float = Field(default=10.0, gt=0)

    tracker_max_concurrent_calls: int = Field(default=8, ge=1, le=100)

    # Slack write pacing (below the method tiers); small values are for tests
    slack_post_interval_seconds: float = Field(default=1.1, ge=0)
    slack_update_interval_seconds: float = Field(default=1.25, ge=0)
    slack_edit_window_seconds: float = Field(default=3.0, ge=0)
    # How long a courier holds a request's news (renewed per delivery): after a crash, the wait for another.
    slack_news_lease_seconds: float = Field(default=90.0, gt=0)
    # After this many days an ended request keeps its state, ids, amounts and audit log, not the words typed in
    # Slack; its undelivered Slack news goes too (the worker prunes hourly).
    retention_days: float = Field(default=90.0, gt=0)

    # HTTP mode
    port: int = Field(default=3000, ge=0, le=65535)
    # When set, /metrics answers only `Authorization: Bearer <token>` (401 otherwise).
    metrics_token: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("slack_bot_token", "slack_signing_secret", "slack_app_token", "metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An empty or whitespace value (a `KEY=` line in .env) is no secret at all: treat it as missing.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("approvers", "requesters", mode="before")
    @classmethod
    def _approvers_from_commas(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("approvers", "requesters")
    @classmethod
    def _approver_ids_look_like_slack_ids(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry[:1] not in ("U", "W", "S") or not entry.isalnum():
                raise ValueError(
                    f"'{entry}' is not a Slack user id (U…/W…) or user-group id (S…)"
                )
        return value

    @field_validator("slack_api_url", "workspace_endpoint", "bss_endpoint",
                     "huaweicloud_sdk_iam_endpoint", "vpc_endpoint", "sts_endpoint", "console_url")
    @classmethod
    def _urls_are_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be a URL starting with http:// or https://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        try:
            url = parse_database_url(value)
        except ArgumentError:
            raise ValueError(f"it is not a database URL; use {DATABASE_EXAMPLES}") from None
        if url.drivername not in SUPPORTED_DATABASES:
            backend = url.get_backend_name()
            hint = ("use postgresql://…, which the bot's psycopg driver serves" if backend == "postgresql"
                    else f"the bot works with SQLite or PostgreSQL, not {backend}; use {DATABASE_EXAMPLES}")
            raise ValueError(f"the driver {url.drivername} is not supported: {hint}")
        return value

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Settings:
        if bool(self.huaweicloud_sdk_ak) != bool(self.huaweicloud_sdk_sk):
            missing = "HUAWEICLOUD_SDK_SK" if self.huaweicloud_sdk_ak else "HUAWEICLOUD_SDK_AK"
            raise ValueError(f"{missing} is missing: the access key and secret key go together")
        iam = (self.huaweicloud_iam_user, self.huaweicloud_iam_password, self.huaweicloud_iam_domain)
        if any(iam) and not all(iam):
            raise ValueError(
                "HUAWEICLOUD_IAM_USER, HUAWEICLOUD_IAM_PASSWORD and HUAWEICLOUD_IAM_DOMAIN must all be set"
                " to log in with an IAM password"
            )
        return self

    @property
    def region_console_url(self) -> str:
        return self.console_url.replace("{region}", self.huaweicloud_region)

    @property
    def uses_aksk(self) -> bool:
        return self.huaweicloud_sdk_ak is not None

    @property
    def uses_iam_password(self) -> bool:
        return self.huaweicloud_iam_user is not None

    @property
    def sandbox_mode(self) -> bool:
        """No cloud credentials: the bot runs against the built-in sandbox."""
        return not (self.uses_aksk or self.uses_iam_password)

    def secret_values(self) -> list[str]:
        """Every secret's plain value, for the log redaction filter."""
        secrets = (
            self.slack_bot_token, self.slack_signing_secret, self.slack_app_token,
            self.huaweicloud_sdk_ak, self.huaweicloud_sdk_sk, self.huaweicloud_sdk_security_token,
            self.huaweicloud_iam_password, self.metrics_token,
        )
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        password = parse_database_url(self.database_url).password
        return [*values, str(password)] if password else values


def parse_database_url(value: str) -> URL:
    """The URL as SQLAlchemy reads it (`postgres://`, Heroku's spelling, read as `postgresql://`)."""
    return make_url("postgresql://" + value.removeprefix("postgres://") if value.startswith("postgres://") else value)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if loc:
        name = loc[0].upper()
        given = first.get("input")
        # A database URL may hold a password: never echo it.
        secret = any(word in name for word in ("TOKEN", "SECRET", "_SK", "_AK", "PASSWORD", "DATABASE_URL"))
        hint = "" if isinstance(given, dict) or secret else f" (got {given!r})"
        return f"Setting {name} is invalid: {message}{hint}."
    return f"Settings are invalid: {message}."


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise `SettingsError` with one plain sentence when they are wrong."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
