"""The front door of `/slack/events`, tried as a stranger on the internet would: junk costs nothing and
logs nothing, signed payloads of the wrong shape never reach a 500, replays are refused by every replica."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.logs import install_redaction
from bot.outage import OUTAGES, SENTENCE
from bot.sandbox.server import free_port
from bot.server import MAX_BODY_BYTES
from bot.store.db import make_engine
from bot.store.schema import migrate
from tests.fake_slack import FakeSlack
from tests.harness import SIGNING_SECRET, Bot, sign
from tests.test_slack_payloads import FILES

FORM = "application/x-www-form-urlencoded"
ROOT = Path(__file__).resolve().parent.parent
HELP = urlencode({"token": "x", "command": "/appserver", "text": "help", "user_id": "U0ASKER", "channel_id": "C1",
                  "trigger_id": "1.2.3"}).encode()
FORGED = b"token=x&text=hi\n2026-11-27 10:00:00,000 INFO bot.workflow: AS-7K3F9QX2 approved by <@U0BOSS>\n"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    install_redaction()  # the record factory the program installs at start: redaction and escaping
    caplog.set_level(logging.DEBUG)
    return caplog


def post(bot: Bot, body: bytes, headers: dict[str, str], content_type: str = FORM) -> httpx.Response:
    return bot.http.post(bot.url + "/slack/events", content=body, headers={"Content-Type": content_type, **headers})


def logged_at_info(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server side logged at INFO and above (the test's own httpx client logs each request it makes)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO and r.name != "httpx"]


def exchange(bot: Bot, head: bytes, body_part: bytes) -> bytes:
    """Send the head and the start of a body on a raw socket, and read the answer without sending the rest."""
    host, port = bot.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body_part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


# Junk costs nothing ---------------------------------------------------------------------------------


def test_a_20_mb_body_is_refused_from_its_length_before_it_is_read(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    size = 20 * 1024 * 1024
    head = (f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {size}\r\n"
            f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n\r\n").encode()
    answer = exchange(bot, head, b"payload=" + b"A" * 65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert b"\r\nconnection: close\r\n" in answer.lower()  # the unread rest cannot be taken for a next request
    assert logged_at_info(log) == []
    assert not any("AAAA" in r.getMessage() for r in log.records)


def test_a_chunked_body_is_cut_off_at_the_limit(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):  # 20 MB, if the server read it all
            yield b"B" * (1024 * 1024)

    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=" + "0" * 64}
    try:
        status = bot.http.post(bot.url + "/slack/events", content=chunks(), headers=headers).status_code
    except httpx.TransportError:  # the server answered and closed while the client was still sending
        status = 413
    assert status == 413
    assert logged_at_info(log) == []
    assert MAX_BODY_BYTES < 2 * 1024 * 1024


def test_unsigned_stale_or_malformed_requests_get_401_and_leave_no_trace(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    now = int(time.time())
    cases = [
        (FORGED, {}),
        (FORGED, {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + "1" * 64}),
        (FORGED, {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=zz"}),
        (HELP, sign(HELP, timestamp=now - 400)),
        (HELP, sign(HELP, timestamp=now + 400)),  # a future timestamp beyond Slack's window
        (HELP, {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=" + "1" * 64}),
        (b"[1, 2, 3]", {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + "2" * 64}),
        (b"[" * 100_000, {"X-Slack-Request-Timestamp": str(now)}),
        (b"\xff\xfe\x00junk", {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + "3" * 64}),
    ]
    for body, headers in cases:
        assert post(bot, body, headers, "application/json").status_code == 401, (body[:20], headers)
    assert logged_at_info(log) == []
    everything = "\n".join(r.getMessage() for r in log.records)
    assert "approved by" not in everything and "[[[" not in everything
    metrics = bot.http.get(bot.url + "/metrics").text
    assert 'appserver_slack_refused_total{reason="the signature does not match"}' in metrics


def test_signed_json_arrays_deep_nesting_and_non_utf8_are_400(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    for body in (b"[1, 2, 3]", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 60 + b"1" + b"}" * 60,
                 b"\xff\xfe\x00junk", b"payload=%5B%5D", b"payload=%7Bnot-json"):
        response = post(bot, body, sign(body), "application/json" if body.startswith((b"[", b"{")) else FORM)
        assert response.status_code == 400, (body[:20], response.status_code)
    assert not [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_signed_request_is_taken_once_even_with_a_future_timestamp(bot: Bot) -> None:
    future = int(time.time()) + 280
    headers = sign(HELP, timestamp=future)
    assert post(bot, HELP, headers).status_code == 200
    assert post(bot, HELP, headers).status_code == 401
    with bot.runtime.engine.connect() as connection:
        expiry = connection.execute(text("SELECT expires_at FROM seen_signatures")).scalars().all()
    assert expiry == [future + 301]  # remembered until Slack's window no longer accepts that timestamp


# Logs cannot be forged ---------------------------------------------------------------------------


def test_a_logged_value_with_newlines_stays_on_its_line(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    forged = "x\n2026-11-27 10:00:00,000 INFO bot.workflow: AS-7K3F9QX2 approved by <@U0BOSS>\x1b[2J"
    payload = {"type": "block_actions", "user": {"id": "U0ASKER"}, "team": {"id": "T1"}, "trigger_id": "1.2",
               "actions": [{"action_id": forged, "block_id": "b", "type": "button", "value": "v"}]}
    assert bot.interact(payload).status_code == 200
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    lines = "\n".join(formatter.format(r) for r in log.records).splitlines()
    assert not [line for line in lines if line.startswith("2026-11-27 10:00:00,000 INFO bot.workflow")]
    assert any("\\n2026-11-27 10:00:00,000 INFO bot.workflow" in line for line in lines)
    assert not any("\x1b" in line for line in lines)


# Signed payloads of the wrong shape -------------------------------------------------------------------

PAYLOADS = [p for p in FILES if not p.name.startswith(("slash_command.",)) and p.suffix == ".json"]
SENT: set[bytes] = set()
REPLACEMENTS: list[Any] = [None, 0, 1.5, True, "x", "", [], {}, ["x"], [{}], {"id": 1}]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def mutated(data: Any, path: tuple[Any, ...], replacement: Any, drop: bool) -> Any:
    copied = copy.deepcopy(data)
    parent = copied
    for part in path[:-1]:
        parent = parent[part]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(replacement)
    return copied


def encoded(path_name: str, data: Any) -> tuple[bytes, str]:
    if "event" in data or data.get("type") == "event_callback" or path_name.startswith("app_home_opened."):
        if path_name.startswith("app_home_opened.event_only"):
            data = {"type": "event_callback", "event_id": "EvDocs", "team_id": "T1", "api_app_id": "A1", "event": data}
        return json.dumps(data).encode(), "application/json"
    return ("payload=" + quote(json.dumps(data))).encode(), FORM


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, bytes, str]:
    path = draw(st.sampled_from(PAYLOADS))
    data = json.loads(path.read_text())
    where = draw(st.sampled_from(list(_paths(data))))
    drop = draw(st.booleans())
    replacement = draw(st.sampled_from(REPLACEMENTS))
    body, content_type = encoded(path.name, mutated(data, where, replacement, drop))
    return f"{path.name} {where} {'dropped' if drop else replacement!r}", body, content_type


def test_a_signed_submission_whose_response_urls_are_not_a_list_is_acknowledged_once(
    bot: Bot, log: pytest.LogCaptureFixture
) -> None:
    # Found by the mutation test below: Bolt measures `response_urls` before any listener runs.
    data = json.loads(next(p for p in PAYLOADS if p.name == "view_submission.bolt-python.json").read_text())
    for broken in (None, "x", [1]):
        body, content_type = encoded("view_submission.bolt-python.json", {**data, "response_urls": broken})
        assert bot.post(body, content_type).status_code == 200
    assert [r.getMessage() for r in log.records if r.levelno >= logging.WARNING] == [
        "acknowledged and dropped a signed payload that is not Slack's shape: response_urls is not a list of objects"
    ] * 3


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(case=mutations())
def test_signed_real_payloads_mutated_at_any_depth_never_reach_a_500(bot: Bot, case: tuple[str, bytes, str],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    what, body, content_type = case
    if body in SENT:  # the same bytes again within a second would be the same signature: a replay
        return
    SENT.add(body)
    response = bot.post(body, content_type)
    assert response.status_code < 500, what
    assert response.status_code in (200, 400, 404), (what, response.status_code)
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, (what, [r.getMessage() for r in tracebacks])


def test_every_slash_command_with_a_field_of_another_type_is_answered(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    commands = [json.loads(p.read_text()) for p in FILES if p.name.startswith("slash_command.") and p.suffix == ".json"]
    for command in commands:
        for key in command:
            for replacement in ("", "[]", "{}", "x" * 5000):
                body = urlencode({**command, key: replacement}).encode()
                assert bot.post(body, FORM).status_code < 500, (key, replacement)
            body = urlencode({k: v for k, v in command.items() if k != key}).encode()
            assert bot.post(body, FORM).status_code < 500, key
    assert not [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR]


# Replicas share the replay memory ---------------------------------------------------------------------


def _serve(database_url: str, slack_url: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-fake-token",
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack_url, "DATABASE_URL": database_url}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-tracker", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _up(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/healthz", timeout=2)
            return
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)


def _replicas_refuse_each_others_replays(database_url: str, slack_url: str, cwd: Path) -> None:
    replicas = [_serve(database_url, slack_url, cwd) for _ in range(2)]
    try:
        for proc, url in replicas:
            _up(proc, url)
        (_, first), (_, second) = replicas
        for taker, other in ((first, second), (second, first)):
            body = urlencode({"token": "x", "command": "/appserver", "text": "help", "user_id": "U1",
                              "channel_id": "C1", "trigger_id": str(time.time_ns())}).encode()
            headers = {"Content-Type": FORM, **sign(body)}
            first_answer = httpx.post(taker + "/slack/events", content=body, headers=headers)
            assert first_answer.status_code == 200, first_answer.text
            assert httpx.post(other + "/slack/events", content=body, headers=headers).status_code == 401
            assert httpx.post(taker + "/slack/events", content=body, headers=headers).status_code == 401
    finally:
        outputs = []
        for proc, _ in replicas:
            proc.send_signal(signal.SIGTERM)
            outputs.append(proc.communicate(timeout=30)[0])
    for output in outputs:
        assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.postgres
def test_two_serve_processes_on_postgresql_refuse_each_others_replays(
    postgres_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    _replicas_refuse_each_others_replays(postgres_url, fake_slack[1], tmp_path)


@pytest.mark.slow
def test_two_serve_processes_on_one_sqlite_file_refuse_each_others_replays(
    fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    # SQLite takes the insert on the event loop's own connection when no writer is busy: still one memory.
    _replicas_refuse_each_others_replays(f"sqlite:///{tmp_path}/bot.db", fake_slack[1], tmp_path)


def test_without_the_replay_memory_a_signed_request_is_not_taken_and_its_person_is_told(
    bot: Bot, log: pytest.LogCaptureFixture
) -> None:
    OUTAGES.reset()
    with bot.runtime.engine.begin() as connection:
        connection.execute(text("DROP TABLE seen_signatures"))
    answers = [post(bot, HELP, sign(HELP)) for _ in range(3)]
    # Not taken (no usage text), and said in a sentence instead of an error Slack would show as the app's failure.
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"response_type": "ephemeral", "text": SENTENCE})] * 3
    warnings = [r for r in log.records if r.levelno >= logging.WARNING and r.name.startswith("bot")]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert warnings[0].getMessage().startswith("the database cannot be reached (OperationalError: no such table")
