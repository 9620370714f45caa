"""The real bot over HTTP: its ASGI app with lifespan (tracker running), the sandbox cloud and a fake
Slack Web API, all on loopback; requests into it are signed like Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from bot.runtime import Runtime, build_runtime
from bot.sandbox import Sandbox, seed
from bot.sandbox.server import BackgroundServer
from bot.server import create_asgi_app
from bot.settings import Settings
from bot.slack import forms
from bot.slack.ids import Action, Block, Callback
from tests.fake_slack import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REQUESTER = "U0REQUESTER"
APPROVER = "U0APPROVER"
OTHER_APPROVER = "U0APPROVER2"
STRANGER = "U0STRANGER"
APPROVAL_CHANNEL = "C0APPROVALS"
NOTIFY_CHANNEL = "C0NOTIFY"
REQUEST_CHANNEL = "C0REQUESTS"


def sign(body: bytes, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Bot:
    url: str
    slack: FakeSlack
    sandbox: Sandbox
    runtime: Runtime
    http: httpx.Client
    response_url: str

    # Sending --------------------------------------------------------------------------------

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None,
             timestamp: int | None = None) -> httpx.Response:
        all_headers = {"Content-Type": content_type, **sign(body, timestamp), **(headers or {})}
        return self.http.post(self.url + "/slack/events", content=body, headers=all_headers)

    def command(self, text: str, user: str = REQUESTER, channel: str = REQUEST_CHANNEL) -> httpx.Response:
        form = {"token": "x", "team_id": "T0SANDBOX", "team_domain": "sandbox", "channel_id": channel,
                "channel_name": "requests", "user_id": user, "user_name": user.lower(), "command": "/appserver",
                "text": text, "api_app_id": "A0APP", "response_url": self.response_url,
                "trigger_id": f"{time.time()}.1.abc"}
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def interact(self, payload: dict[str, Any]) -> httpx.Response:
        body = ("payload=" + quote(json.dumps(payload))).encode()
        return self.post(body, "application/x-www-form-urlencoded")

    def event(self, event: dict[str, Any], event_id: str, retry: int | None = None) -> httpx.Response:
        envelope = {"token": "x", "team_id": "T0SANDBOX", "api_app_id": "A0APP", "event": event,
                    "type": "event_callback", "event_id": event_id, "event_time": int(time.time())}
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        # Slack signs a retry anew, seconds later.
        timestamp = int(time.time()) + 3 * retry if retry else None
        return self.post(json.dumps(envelope).encode(), "application/json", headers, timestamp)

    # The create modal -----------------------------------------------------------------------

    def open_form(self, text: str = "create", user: str = REQUESTER) -> dict[str, Any]:
        """The create form once filled: opened at once (catalogue cached) or after a loading view."""
        def views() -> int:
            return len(self.slack.of("views.open")) + len(self.slack.of("views.update"))

        before = views()
        assert self.command(text, user).status_code == 200

        def filled() -> dict[str, Any] | None:
            view = self.slack.latest_view() if views() > before else None
            return view if view is not None and "Loading" not in json.dumps(view.get("blocks")) else None

        form: dict[str, Any] = wait_for(filled, what="the filled create form")
        return form

    def view_payload(self, view: dict[str, Any], values: dict[str, Any], user: str, kind: str,
                     actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        state = {"values": values}
        payload: dict[str, Any] = {
            "type": kind, "team": {"id": "T0SANDBOX", "domain": "sandbox"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"}, "api_app_id": "A0APP",
            "token": "x", "trigger_id": f"{time.time()}.2.def",
            "view": {**view, "state": state, "type": "modal", "team_id": "T0SANDBOX", "app_id": "A0APP",
                     "bot_id": "B0BOT", "root_view_id": view["id"], "previous_view_id": None},
        }
        if actions is not None:
            payload["actions"] = actions
            payload["container"] = {"type": "view", "view_id": view["id"]}
        return payload

    def choose_group(self, view: dict[str, Any], group_id: str, user: str = REQUESTER) -> dict[str, Any]:
        before = len(self.slack.of("views.update"))
        values = {Block.GROUP.value: {Action.GROUP_SELECT.value: {"type": "static_select",
                                                                  "selected_option": {"value": group_id}}}}
        action = {"type": "static_select", "action_id": Action.GROUP_SELECT.value, "block_id": Block.GROUP.value,
                  "selected_option": {"text": {"type": "plain_text", "text": "g"}, "value": group_id},
                  "action_ts": str(time.time())}
        assert self.interact(self.view_payload(view, values, user, "block_actions", [action])).status_code == 200
        wait_for(lambda: len(self.slack.of("views.update")) > before, what="the form prefilled from the group")
        return self.slack.latest_view()

    def submit_form(self, view: dict[str, Any], fields: dict[str, Any], user: str = REQUESTER) -> httpx.Response:
        return self.interact(self.view_payload(view, form_values(fields), user, "view_submission"))

    def click(self, action_id: str, value: str, user: str, channel: str | None = None,
              message_ts: str | None = None) -> httpx.Response:
        payload: dict[str, Any] = {
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
            "api_app_id": "A0APP", "token": "x", "trigger_id": f"{time.time()}.3.ghi",
            "team": {"id": "T0SANDBOX", "domain": "sandbox"},
            "actions": [{"action_id": action_id, "block_id": f"b:{value}", "type": "button", "value": value,
                         "text": {"type": "plain_text", "text": "x"}, "action_ts": str(time.time())}],
        }
        if channel:
            payload["channel"] = {"id": channel, "name": "c"}
            payload["container"] = {"type": "message", "channel_id": channel, "message_ts": message_ts or "1.0"}
            payload["message"] = {"type": "message", "ts": message_ts or "1.0", "text": "card"}
        return self.interact(payload)

    def submit_reject_reason(self, reason: str, user: str) -> httpx.Response:
        view = self.slack.latest_view()
        assert view.get("callback_id") == Callback.REJECT.value
        values = {Block.REJECT_REASON.value: {Action.INPUT.value: {"type": "plain_text_input", "value": reason}}}
        return self.interact(self.view_payload(view, values, user, "view_submission"))


def form_values(fields: dict[str, Any]) -> dict[str, Any]:
    """State values as Slack sends them for our blocks (None leaves a field empty)."""
    def select(value: Any) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value} if value is not None else None}

    def number(value: Any) -> dict[str, Any]:
        return {"type": "number_input", "value": None if value is None else str(value)}

    def radio(value: Any) -> dict[str, Any]:
        return {"type": "radio_buttons", "selected_option": {"value": value} if value is not None else None}

    values: dict[str, Any] = {
        Block.GROUP.value: {Action.GROUP_SELECT.value: select(fields.get("group"))},
        Block.PRODUCT.value: {Action.INPUT.value: select(fields.get("product"))},
        Block.AZ.value: {Action.INPUT.value: select(fields.get("az"))},
        Block.DISK_TYPE.value: {Action.INPUT.value: select(fields.get("disk_type"))},
        Block.DISK_SIZE.value: {Action.INPUT.value: number(fields.get("disk_size"))},
        Block.COUNT.value: {Action.INPUT.value: number(fields.get("count"))},
        Block.BILLING.value: {Action.BILLING_CHANGE.value: radio(fields.get("billing", "postPaid"))},
        Block.AGENT.value: {Action.INPUT.value: {"type": "checkboxes", "selected_options": []}},
        Block.REASON.value: {Action.INPUT.value: {"type": "plain_text_input", "value": fields.get("reason")}},
    }
    if fields.get("billing") == "prePaid":
        values[Block.PERIOD_UNIT.value] = {Action.INPUT.value: radio(fields.get("period_unit", "2"))}
        values[Block.PERIOD_NUM.value] = {Action.INPUT.value: number(fields.get("period_num", 1))}
        chosen = [{"value": v} for v in ("auto_pay", "auto_renew") if fields.get(v)]
        values[Block.PREPAID_OPTIONS.value] = {Action.INPUT.value: {"type": "checkboxes", "selected_options": chosen}}
    else:
        values[Block.DEDICATED_HOST.value] = {Action.INPUT.value: {"type": "plain_text_input",
                                                                    "value": fields.get("dedicated_host")}}
    return values


@contextmanager
def running_bot(settings: Settings, sandbox: Sandbox, slack: FakeSlack) -> Iterator[Bot]:
    runtime = build_runtime(settings)
    app = create_asgi_app(runtime, run_tracker=True)
    with BackgroundServer(app, lifespan=True) as server, httpx.Client(timeout=10) as http:
        response_url = settings.slack_api_url.removesuffix("/api/") + "/response"
        yield Bot(server.url, slack, sandbox, runtime, http, response_url)


def create_submission(n: int, channel: str = "C0REQ", user: str = "U0ASKER") -> bytes:
    """A signed-ready body: a valid yearly/monthly create form for the sandbox's first group (unique per n)."""
    group = seed.server_groups()[0]
    subnet = next(s for s in seed.SUBNETS if s["id"] == group["subnet_id"])
    context = forms.ModalContext(channel_id=channel, group_id=group["id"], subnet_id=subnet["id"],
                                 vpc_id=subnet["vpc_id"], os_type="Windows")
    values = form_values({"group": group["id"], "product": group["product_id"], "disk_type": "SAS", "disk_size": 80,
                          "count": 1, "billing": "prePaid", "period_unit": "2", "period_num": 1,
                          "reason": f"Load test request {n}"})
    payload = {"type": "view_submission", "user": {"id": user}, "team": {"id": "T1"},
               "trigger_id": f"{time.time_ns()}.{n}",
               "view": {"id": f"V{n}", "type": "modal", "callback_id": Callback.CREATE.value, "hash": "h",
                        "private_metadata": context.dump(), "state": {"values": values}}}
    return ("payload=" + quote(json.dumps(payload))).encode()
