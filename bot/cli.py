"""`appserver-bot` (also `python -m bot`): the commands an operator runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot import __version__
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.secret_values())
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from bot.store.db import make_engine
    from bot.store.schema import migrate

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        status = migrate(engine)
    finally:
        engine.dispose()
    print(status.sentence)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.doctor import run_doctor

    checks = asyncio.run(run_doctor(_settings()))
    for check in checks:
        print(check.line())
    return 0 if all(c.ok for c in checks) else 1


def cmd_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.sandbox import Sandbox, SandboxConfig

    configure_logging("INFO")
    config = SandboxConfig(job_seconds=args.job_seconds, order_seconds=args.order_seconds)
    sandbox = Sandbox(config)
    print(
        f"Sandbox cloud on http://{args.host}:{args.port} (AK {config.access_key}, SK {config.secret_key}, "
        f"project {config.project_id}, region {config.region})",
        flush=True,
    )
    uvicorn.run(sandbox.app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appserver-bot",
        description="Order Huawei Cloud Workspace app servers from Slack, with approvals and tracking.",
    )
    parser.add_argument("--version", action="version", version=f"appserver-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(handler=cmd_migrate)

    doctor = commands.add_parser("doctor", help="check the settings, the cloud, Slack and the database")
    doctor.set_defaults(handler=cmd_doctor)

    sandbox = commands.add_parser("sandbox", help="run the local cloud sandbox (no cloud account needed)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8700)
    sandbox.add_argument("--job-seconds", type=float, default=20.0, help="how long a create job takes")
    sandbox.add_argument("--order-seconds", type=float, default=15.0, help="how long a paid order takes")
    sandbox.set_defaults(handler=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as error:
        print(f"appserver-bot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
