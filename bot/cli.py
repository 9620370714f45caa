"""`appserver-bot` (also `python -m bot`): the commands an operator runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot import __version__
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, StartupError, load_settings


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.secret_values(), settings.log_format)
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


def _serve(args: argparse.Namespace, *, socket_mode: bool) -> int:
    import uvicorn

    from bot.runtime import build_runtime
    from bot.server import create_asgi_app

    settings = _settings()
    app_token = None
    if socket_mode:
        if settings.slack_app_token is None:
            raise SettingsError("SLACK_APP_TOKEN is not set: Socket Mode needs the app-level token (xapp-…).")
        app_token = settings.slack_app_token.get_secret_value()
    runtime = build_runtime(settings, need_signing_secret=not socket_mode)
    app = create_asgi_app(runtime, run_tracker=not args.no_tracker, socket_app_token=app_token)
    uvicorn.run(app, host=args.host, port=args.port or settings.port, log_level="info", access_log=False)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args, socket_mode=False)


def cmd_socket(args: argparse.Namespace) -> int:
    return _serve(args, socket_mode=True)


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from bot.runtime import build_runtime

    runtime = build_runtime(_settings(), need_signing_secret=False)

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start(run_tracker=True)
        await stop.wait()
        await runtime.stop()

    asyncio.run(work())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appserver-bot",
        description="Order Huawei Cloud Workspace app servers from Slack, with approvals and tracking.",
    )
    parser.add_argument("--version", action="version", version=f"appserver-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, handler, help_text in (
        ("serve", cmd_serve, "run the bot in HTTP mode (POST /slack/events, /healthz, /metrics)"),
        ("socket", cmd_socket, "run the bot in Socket Mode (no public URL; needs SLACK_APP_TOKEN)"),
    ):
        mode = commands.add_parser(name, help=help_text)
        mode.add_argument("--host", default="0.0.0.0")
        mode.add_argument("--port", type=int, default=None, help="default: $PORT, or 3000")
        mode.add_argument("--no-tracker", action="store_true", help="leave tracking to a separate `worker` process")
        mode.set_defaults(handler=handler)

    worker = commands.add_parser("worker", help="run only the tracker (submits, polls, notifies)")
    worker.set_defaults(handler=cmd_worker)

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
    except StartupError as error:
        print(f"appserver-bot: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return code
