"""`appserver-bot` (also `python -m bot`): the commands an operator runs.

Every mistake an operator can make (a setting, the database, a token Slack refuses) ends the program
with one sentence on stderr naming what to fix and a non-zero exit status; the traceback is shown only
with LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot import __version__
from bot.logs import configure_logging, redact
from bot.settings import Settings, SettingsError, StartupError, load_settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from bot.runtime import Runtime

log = logging.getLogger("bot")

EXIT_SETTINGS, EXIT_STARTUP, EXIT_UNEXPECTED = 2, 3, 1


def _settings(*, quiet: bool = False) -> Settings:
    """The settings, with logging set up; `quiet` shows only errors (unless LOG_LEVEL=DEBUG)."""
    settings = load_settings()
    level = "ERROR" if quiet and settings.log_level != "DEBUG" else settings.log_level
    configure_logging(level, settings.secret_values(), settings.log_format)
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from bot.store.db import describe_url, open_database
    from bot.store.schema import migrate, schema_status

    settings = _settings()
    engine = open_database(settings.database_url)
    try:
        before = schema_status(engine)
        after = migrate(engine, to=args.to)
    finally:
        engine.dispose()
    where = describe_url(engine)
    if before.current == after.current:
        already = "up to date" if args.to is None else "at that revision"
        print(f"{where}: the schema was already {already} ({after.current or 'empty'}).")
    else:
        print(f"{where}: migrated the schema from {before.current or 'empty'} to {after.current or 'empty'}.")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    from bot.admin.commands import run_admin
    from bot.store.db import open_database
    from bot.store.schema import ensure_schema

    settings = _settings(quiet=True)
    engine = open_database(settings.database_url)
    try:
        ensure_schema(engine)
        return run_admin(args, settings, engine)
    finally:
        engine.dispose()


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.doctor import run_doctor

    checks = asyncio.run(run_doctor(_settings(quiet=True)))
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


def _warn_about_settings(settings: Settings) -> None:
    from bot.startup import settings_warnings

    for warning in settings_warnings(settings):
        log.warning("%s", warning)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened before anything starts, so a busy port is one sentence."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise StartupError(f"Cannot listen on {host}:{port} ({error.strerror or error}): set PORT (or --port) to a "
                           "free port, or stop what uses it.") from error
    return listener


# Uvicorn's share of a stop: open connections get this long; the runtime's own stop follows (bot.runtime).
HTTP_SHUTDOWN_SECONDS = 3


def _run_http(app: Starlette, host: str, port: int, listener: socket.socket, debug: bool,
              servers: list[uvicorn.Server]) -> None:
    import uvicorn

    servers.append(uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, access_log=debug, log_config=None, log_level="debug" if debug else "warning",
        timeout_graceful_shutdown=HTTP_SHUTDOWN_SECONDS)))
    servers[0].run(sockets=[listener])


def _serve(args: argparse.Namespace, *, socket_mode: bool) -> int:
    from bot.runtime import build_runtime, require_bot_token
    from bot.server import create_asgi_app
    from bot.slack.socket_mode import SocketModeLink

    settings = _settings()
    require_bot_token(settings)  # the first token a newcomer sets, so the first one named
    if socket_mode and settings.slack_app_token is None:
        raise SettingsError("SLACK_APP_TOKEN is not set: Socket Mode needs the app-level token (xapp-…).")
    port = args.port if args.port is not None else settings.port
    listener = _listen(args.host, port)
    runtime = build_runtime(settings, need_signing_secret=not socket_mode)
    stopped_because: list[str] = []
    servers: list[uvicorn.Server] = []

    def stop_with(sentence: str) -> None:
        """A token Slack refuses: shut down as after SIGTERM, then say why."""
        stopped_because.append(sentence)
        for server in servers:
            server.should_exit = True

    runtime.check_slack_at_start = True
    runtime.whole_process = True
    runtime.on_fatal = stop_with
    socket = None
    if socket_mode and settings.slack_app_token is not None:
        socket = SocketModeLink(runtime.app, settings.slack_app_token.get_secret_value(), on_refused=stop_with)
    app = create_asgi_app(runtime, run_tracker=not args.no_tracker, socket=socket)
    _warn_about_settings(settings)
    mode = "Socket Mode" if socket_mode else "HTTP mode"
    work = "answering Slack only (a worker tracks)" if args.no_tracker else "answering Slack, tracking, posting news"
    log.info("appserver-bot %s: %s on http://%s:%s (/healthz, /metrics), %s; %s", __version__, mode, args.host,
             port, work, runtime.summary())
    _run_http(app, args.host, port, listener, settings.log_level == "DEBUG", servers)
    if stopped_because:
        raise StartupError(stopped_because[0])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args, socket_mode=False)


def cmd_socket(args: argparse.Namespace) -> int:
    return _serve(args, socket_mode=True)


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.runtime import build_runtime
    from bot.server import create_asgi_app

    settings = _settings()
    port = args.port if args.port is not None else settings.port
    try:
        listener: socket.socket | None = _listen(args.host, port)
    except StartupError as busy:
        # The worker's own work matters more than its health endpoint: it goes on, and says what to set.
        log.warning("%s The worker runs without /healthz and /metrics.", busy)
        listener = None
    runtime = build_runtime(settings, need_signing_secret=False)
    runtime.check_slack_at_start = True
    runtime.whole_process = True
    servers: list[uvicorn.Server] = []

    def stop_now(_sentence: str) -> None:
        for server in servers:
            server.should_exit = True

    if listener is not None:
        runtime.on_fatal = stop_now
        log.info("appserver-bot %s: worker, tracking and posting news, on http://%s:%s (/healthz, /metrics); %s",
                 __version__, args.host, port, runtime.summary())
        _run_http(create_asgi_app(runtime, run_tracker=True, answer_slack=False), args.host, port, listener,
                  settings.log_level == "DEBUG", servers)
    else:
        _work_without_http(runtime)
    if runtime.fatal:
        raise StartupError(runtime.fatal)
    return 0


def _work_without_http(runtime: Runtime) -> None:
    import signal

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runtime.on_fatal = lambda _sentence: stop.set()
        await runtime.start(run_tracker=True, answer_slack=False)
        log.info("appserver-bot %s: worker, tracking and posting news; %s", __version__, runtime.summary())
        await stop.wait()
        await runtime.stop()

    asyncio.run(work())


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; options say their defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str,
             description: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                               formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appserver-bot", formatter_class=_HelpFormatter,
        description="Order Huawei Cloud Workspace app servers from Slack, with approvals and tracking.\n\n"
                    "Settings come from the environment or a .env file in the working directory "
                    "(see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"appserver-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, handler, summary, description in (
        ("serve", cmd_serve, "run the bot in HTTP mode (POST /slack/events, /healthz, /metrics)",
         "Slack sends commands and clicks to POST /slack/events on this address, so it needs a public URL\n"
         "and SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET. Without cloud credentials the bot runs against its\n"
         "built-in sandbox cloud."),
        ("socket", cmd_socket, "run the bot in Socket Mode (no public URL; needs SLACK_APP_TOKEN)",
         "The bot connects out to Slack over a WebSocket, so no public URL is needed; it needs\n"
         "SLACK_BOT_TOKEN and SLACK_APP_TOKEN. /healthz and /metrics still listen on --port; /healthz\n"
         "answers 503 until Slack is connected."),
    ):
        mode = _command(commands, name, summary, description)
        mode.add_argument("--host", default="0.0.0.0", help="address to listen on for /healthz, /metrics"
                          + (" and Slack's requests" if name == "serve" else ""))
        mode.add_argument("--port", type=int, default=None, help="port to listen on (default: $PORT, or 3000)")
        mode.add_argument("--no-tracker", action="store_true",
                          help="leave tracking and posting to separate `appserver-bot worker` processes")
        mode.set_defaults(handler=handler)

    worker = _command(commands, "worker", "run only the tracker and the courier (no Slack requests)",
                      "Follows ordered requests in the cloud and posts the news to Slack; run it beside\n"
                      "`serve --no-tracker` or `socket --no-tracker` on a shared PostgreSQL (see the Procfile).\n"
                      "Serves /healthz and /metrics on --port; on a port in use it warns and works without them.")
    worker.add_argument("--host", default="0.0.0.0", help="address to listen on for /healthz and /metrics")
    worker.add_argument("--port", type=int, default=None, help="port to listen on (default: $PORT, or 3000)")
    worker.set_defaults(handler=cmd_worker)

    migrate = _command(commands, "migrate", "bring the database schema up to date, or to a revision",
                       "Needed after each upgrade on PostgreSQL (DATABASE_URL); SQLite is migrated on start.\n"
                       "Before going back to an older version, run this version's `migrate --to REVISION` with the\n"
                       "revision the older version needs (it names it when it refuses to start).")
    migrate.add_argument("--to", metavar="REVISION", default=None,
                         help="upgrade or downgrade to this schema revision (e.g. 0006; `base` empties it)")
    migrate.set_defaults(handler=cmd_migrate)

    from bot.admin.commands import add_admin_commands

    admin = _command(commands, "admin", "the operator's tools: requests that are stuck or need a person",
                     "Reads and changes requests in the database of DATABASE_URL; every change is audited as the\n"
                     "operator and told in the request's thread and card by a running worker.")
    add_admin_commands(admin, _command)
    admin.set_defaults(handler=cmd_admin)

    doctor = _command(commands, "doctor", "check the settings, the cloud, Slack and the database",
                      "Prints one line per check (ok, warn or FAIL) and exits 1 if any check fails.\n"
                      "Changes nothing: a missing SQLite file is reported, not created.")
    doctor.set_defaults(handler=cmd_doctor)

    sandbox = _command(commands, "sandbox", "run the local cloud sandbox (no cloud account needed)",
                       "Serves WorkspaceApp, VPC, BSS and IAM with the real paths and JSON, checking AK/SK\n"
                       "signatures; point the *_ENDPOINT settings at it to try the cloud side alone.")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, default=8700, help="port to listen on")
    sandbox.add_argument("--job-seconds", type=float, default=20.0, help="how long a create job takes")
    sandbox.add_argument("--order-seconds", type=float, default=15.0, help="how long a paid order takes")
    sandbox.set_defaults(handler=cmd_sandbox)
    return parser


def _debugging() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG) or os.environ.get("LOG_LEVEL", "").upper() == "DEBUG"


def _say(message: str, error: BaseException) -> None:
    if _debugging():
        traceback.print_exception(error)
    print(f"appserver-bot: {redact(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as error:
        _say(str(error), error)
        return EXIT_SETTINGS
    except StartupError as error:
        _say(str(error), error)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the last resort: still one sentence, the traceback at DEBUG
        first_line = (str(error).splitlines() or [""])[0]
        _say(f"stopped by an unexpected {type(error).__name__}: {first_line} (LOG_LEVEL=DEBUG shows where).", error)
        return EXIT_UNEXPECTED
    return code
