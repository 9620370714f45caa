"""`appserver-bot admin …`: the subcommands, their options and what they print."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from bot.admin.acting import AdminRefused, Done, Looker, OperatorActions
from bot.admin.reading import AdminReader, Details, Listed, Thresholds, age, when
from bot.settings import Settings

# bot.cli's maker of a documented subcommand: (subparsers, name, summary, description) → its parser.
MakeCommand = Callable[[Any, str, str, str], argparse.ArgumentParser]


def add_admin_commands(admin: argparse.ArgumentParser, make: MakeCommand) -> None:
    """The subcommands of `admin`, each with its --help."""
    sub = admin.add_subparsers(dest="admin_command", required=True, metavar="SUBCOMMAND")

    listing = make(sub, "list", "list the requests that are stuck or need a person, with their ages and audit log",
                   "Lists: an unknown create outcome (needs_attention), a create whose worker stopped, approved or\n"
                   "expired requests no worker picked up, requests the cloud has not moved for --stuck-after\n"
                   "minutes, and Slack news that waited --news-after minutes or failed. Only reads.")
    listing.add_argument("--stuck-after", type=float, default=30.0, metavar="MINUTES",
                         help="minutes in one state before a request counts as stuck")
    listing.add_argument("--news-after", type=float, default=5.0, metavar="MINUTES",
                         help="minutes Slack news may wait before it is listed")
    listing.add_argument("--limit", type=int, default=50, help="at most this many requests")
    listing.add_argument("--audit", type=int, default=5, metavar="N", help="the last N audit rows of each (0: none)")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of text")

    show = make(sub, "show", "show one request: its state, ids, amounts, Slack messages and whole audit log",
                "Only reads.")
    show.add_argument("request_id", metavar="REQUEST", help="the request id, AS-…")
    show.add_argument("--json", action="store_true", help="one JSON document instead of text")

    for name, summary, description in (
        ("cancel", "cancel a request that nothing was sent for yet (waiting for approval, or approved)",
         "Its thread and approval card say it was cancelled by an operator, with the reason. A request\n"
         "already sent to the cloud is refused: see `admin fail`."),
        ("fail", "mark a request that was sent to the cloud as failed, with a reason",
         "For a request the cloud does not finish. Its job or order stays linked to it, and the bot stops\n"
         "following it: check it in the cloud. A create with no answer is closed only once a look at the\n"
         "cloud, after the create could last have been acted on, finds nothing it made (this command looks\n"
         "itself when needed); a create being sent now is refused."),
    ):
        change = make(sub, name, summary, description)
        change.add_argument("request_id", metavar="REQUEST", help="the request id, AS-…")
        change.add_argument("--reason", required=True, help="why, in a sentence: the requester reads it")
        _operator(change)

    repost = make(sub, "repost", "post a request's thread (and its approval card, if it has one) anew",
                  "For messages that were deleted or whose channel was archived: the next worker posts them\n"
                  "again and edits only the new ones from then on.")
    repost.add_argument("request_id", metavar="REQUEST", help="the request id, AS-…")
    repost.add_argument("--channel", metavar="CHANNEL_ID", help="post the thread in this channel instead")
    _operator(repost)

    requeue = make(sub, "requeue", "send a request's waiting Slack news again now",
                   "Its news that waits (for example after Slack was away) becomes due at once, its tries counted\n"
                   "afresh; the next worker delivers it in order. With none waiting, its thread and card are\n"
                   "redrawn as the request stands.")
    requeue.add_argument("request_id", metavar="REQUEST", help="the request id, AS-…")
    _operator(requeue)


def _operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="operator", metavar="NAME",
                        help="who acts, for the audit log (default: the login name)")


def _operator_name(args: argparse.Namespace) -> str:
    if args.operator:
        return str(args.operator)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        return "unknown"


def run_admin(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    """Run one subcommand; a refusal is one sentence on stderr and exit status 1."""
    try:
        return _run(args, settings, engine)
    except AdminRefused as refused:
        print(f"appserver-bot: {refused}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    command = args.admin_command
    if command == "list":
        reader = AdminReader(engine)
        thresholds = Thresholds(stuck_after=timedelta(minutes=args.stuck_after),
                                news_after=timedelta(minutes=args.news_after))
        from bot.store.models import utcnow

        now = utcnow()
        listed = reader.attention(thresholds, now=now, limit=args.limit, audit_rows=args.audit)
        if args.json:
            print(json.dumps({"requests": [item.as_dict(now) for item in listed]}, indent=2))
        else:
            print(_listing(listed, now, thresholds))
        return 0
    if command == "show":
        details = AdminReader(engine).details(args.request_id)
        if details is None:
            raise AdminRefused(f"There is no request {args.request_id}.")
        print(json.dumps(details.as_dict(), indent=2) if args.json else _details(details))
        return 0
    actor = f"operator:{_operator_name(args)}"
    lease = timedelta(seconds=settings.submit_lease_seconds)
    if command == "fail":
        done = asyncio.run(_fail(args, settings, engine, actor, lease))
    else:
        actions = OperatorActions(engine, actor=actor, submit_lease=lease)
        if command == "cancel":
            done = actions.cancel(args.request_id, args.reason)
        elif command == "repost":
            done = actions.repost(args.request_id, args.channel)
        else:
            done = actions.requeue(args.request_id)
    print(done.sentence)
    return 0


async def _fail(args: argparse.Namespace, settings: Settings, engine: Engine, actor: str, lease: timedelta) -> Done:
    """`fail` may need a look at the cloud (a create with no answer): the workflow's own look, which records what
    it finds and links what is certainly ours. The bot's built-in sandbox lives in the bot's process: not seen."""
    if settings.sandbox_mode:
        return await OperatorActions(engine, actor=actor, submit_lease=lease).fail(args.request_id, args.reason)
    from bot.cloud.client import build_cloud
    from bot.store.repository import RequestStore
    from bot.workflow import CloudAdapter, Policy, Workflow

    cloud = build_cloud(settings)
    store = RequestStore(engine)
    try:
        workflow = Workflow(store, CloudAdapter(cloud), _NoDirectory(), Policy(submit_lease=lease))
        look: Looker = workflow.look_for_created
        return await OperatorActions(engine, actor=actor, submit_lease=lease, look=look).fail(args.request_id,
                                                                                                 args.reason)
    finally:
        await cloud.aclose()
        store.close()


class _NoDirectory:
    """The command line has no Slack: nobody is an approver here (the operator acts as the operator)."""

    async def group_members(self, group_id: str) -> set[str]:
        raise LookupError(f"user group {group_id} is not read from the command line")


def _audit_lines(events: list[Any], indent: str) -> list[str]:
    lines = []
    for event in events:
        move = f"{event.old_state or '-'} → {event.new_state}" if event.old_state != event.new_state else event.new_state
        refused = " (refused)" if not event.allowed else ""
        detail = f": {event.detail}" if event.detail else ""
        lines.append(f"{indent}{when(event.at)}  {event.actor}  {event.action}{refused}  [{move}]{detail}")
    return lines


def _listing(listed: list[Listed], now: Any, thresholds: Thresholds) -> str:
    if not listed:
        return (f"Nothing needs a person: no request is stuck (in one state for more than {age(thresholds.stuck_after)}), "
                f"and no Slack news waited more than {age(thresholds.news_after)} or failed.")
    out = [f"{len(listed)} request(s) need a person, longest waiting first:"]
    for item in listed:
        row = item.request
        out.append("")
        out.append(f"{row.id}  {row.state}  for {age(now - item.state_since)} (since {when(item.state_since)}), "
                   f"asked by {row.requester_id} {age(now - row.created_at)} ago")
        out += [f"  - {reason}" for reason in item.reasons]
        if item.audit:
            out.append("  audit log (latest last):")
            out += _audit_lines(item.audit, "    ")
    return "\n".join(out)


def _details(details: Details) -> str:
    out = [f"{details.request.id}"]
    width = max(len(label) for label, _ in details.facts())
    out += [f"  {label.ljust(width)}  {value}" for label, value in details.facts()]
    out.append("  audit log:")
    out += _audit_lines(details.audit, "    ")
    return "\n".join(out)
