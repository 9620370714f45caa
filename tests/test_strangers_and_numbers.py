"""Numbers from outside text, tried as a stranger and as a member would: a timestamp or a length in other
digits, `count=²`, five thousand digits in a command or a form field. Each is a 401, a 400 or a sentence,
never a 500 and never a traceback; and only ASCII digits are taken as a number."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest

from bot.digits import ascii_int, quoted
from bot.logs import install_redaction
from bot.runtime import build_runtime
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.slack.ids import Block
from bot.slack.socket_mode import SocketModeLink
from bot.slack.writer import new_web_client
from bot.startup import Backoff
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.flows import OFFICE
from tests.harness import Bot, sign
from tests.socket_stand_in import SocketStandIn

HELP = b"token=x&command=%2Fappserver&text=help&user_id=U0ASKER&channel_id=C1&trigger_id=1.2.3"
# "1700000000" in Arabic-Indic digits: `int()` reads it as the number, `isdigit()` says yes.
ARABIC_INDIC_NOW = "".join(chr(0x0660 + int(d)) for d in str(int(time.time())))


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    install_redaction()
    caplog.set_level(logging.DEBUG)
    return caplog


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    failures = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert failures == [], failures


def raw_post(bot: Bot, headers: list[tuple[str, bytes]], body: bytes) -> bytes:
    """One request on a raw socket, so header values go out as the bytes given (a client library would refuse)."""
    host, port = bot.url.removeprefix("http://").split(":")
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_only_ascii_digits_of_a_bounded_length_are_a_number() -> None:
    assert ascii_int("42", max_digits=3) == 42
    for text in ("¹", "²", "٣", ARABIC_INDIC_NOW, "1_000", "+5", " 5", "5 ", "", "0x10", "9" * 5000, "1234"):
        assert ascii_int(text, max_digits=3) is None, text
    assert quoted("9" * 5000) == "'999999999999'… (5000 characters)"


def test_a_timestamp_or_length_in_other_digits_is_refused_not_a_500(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    signature = sign(HELP)["X-Slack-Signature"].encode()
    form = ("Content-Type", b"application/x-www-form-urlencoded")
    cases = [
        # HTTP header bytes are read as Latin-1: b"\xb9" is "¹", which `isdigit()` takes and `int()` refuses.
        ([form, ("Content-Length", str(len(HELP)).encode()), ("X-Slack-Request-Timestamp", "¹".encode("latin-1")),
          ("X-Slack-Signature", signature)], b"401"),
        ([form, ("Content-Length", str(len(HELP)).encode()),
          ("X-Slack-Request-Timestamp", "17¹²³".encode("latin-1")), ("X-Slack-Signature", signature)], b"401"),
        ([form, ("Content-Length", str(len(HELP)).encode()), ("X-Slack-Request-Timestamp", b"9" * 5000),
          ("X-Slack-Signature", signature)], b"401"),
    ]
    for headers, status in cases:
        answer = raw_post(bot, headers, HELP)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert len(answer) < 1000 and b"Traceback" not in answer
    # A length the server cannot read is refused by the HTTP server or the door, never answered with a 500.
    for length in ("¹".encode("latin-1"), "²".encode(), b"9" * 5000):
        answer = raw_post(bot, [form, ("Content-Length", length), ("X-Slack-Request-Timestamp",
                                                                  str(int(time.time())).encode()),
                                ("X-Slack-Signature", signature)], HELP)
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 401", b"HTTP/1.1 413")) or answer == b"", answer[:200]
    no_tracebacks(log)


@pytest.mark.parametrize("words", ["count=²", "count=٣", "count=" + "9" * 5000, "months=¹", "disk=1_000"])
def test_a_command_with_a_number_in_other_digits_gets_a_sentence(bot: Bot, log: pytest.LogCaptureFixture,
                                                                 words: str) -> None:
    answer = bot.command(f"create {words}")
    assert answer.status_code == 200
    text = answer.text
    key = words.partition("=")[0]
    assert text.startswith(f"{key}= takes a whole number in the digits 0-9"), text
    assert len(text) < 300 and bot.slack.of("views.open") == []
    no_tracebacks(log)


@pytest.mark.parametrize(("count", "sentence"), [
    ("²", "Number of servers must be a whole number in the digits 0-9 (got '²')."),
    ("٣", "Number of servers must be a whole number in the digits 0-9 (got '٣')."),
    ("9" * 5000, "Number of servers is far too large (5000 digits)."),
])
def test_a_form_count_in_other_digits_is_an_inline_error(bot: Bot, log: pytest.LogCaptureFixture, count: str,
                                                         sentence: str) -> None:
    view = bot.choose_group(bot.open_form(), OFFICE["id"])
    answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                    "disk_size": 80, "count": count, "reason": "x"})
    assert answer.status_code == 200
    assert answer.json() == {"response_action": "errors", "errors": {Block.COUNT.value: sentence}}
    assert bot.runtime.store.count_by_state() == {}
    no_tracebacks(log)


def test_a_period_in_other_digits_is_an_inline_error(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    view = bot.choose_group(bot.open_form(), OFFICE["id"])
    answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                    "disk_size": 80, "count": 1, "billing": "prePaid", "period_unit": "2",
                                    "period_num": "٣", "reason": "x"})
    assert answer.json()["errors"] == {Block.PERIOD_NUM.value:
                                       "The period length must be a whole number in the digits 0-9 (got '٣')."}
    assert bot.runtime.store.count_by_state() == {}
    no_tracebacks(log)


# Slack's own numbers: Retry-After -------------------------------------------------------------------------

HTTP_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"  # HTTP allows a date here; slack_sdk's handler does int() on it


@pytest.mark.parametrize("stated", [HTTP_DATE, "¹", "9" * 5000])
async def test_a_429_whose_retry_after_is_not_seconds_is_retried_not_raised(fake_slack: tuple[FakeSlack, str],
                                                                           stated: str) -> None:
    fake, url = fake_slack
    fake.retry_after = stated.encode("utf-8").decode("latin-1")  # as it arrives from the wire
    fake.fail_next("chat.postMessage", "ratelimited")
    client = new_web_client(fake.token, url)
    answer = await client.chat_postMessage(channel="C1", text="hello")
    assert answer["ok"] and len(fake.of("chat.postMessage")) == 2  # refused once, then taken


async def test_socket_mode_rate_limited_with_a_date_keeps_trying_and_connects(
        sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with SocketStandIn([]) as stand_in:
        fake = FakeSlack(socket_url=stand_in.url, retry_after=HTTP_DATE)
        for _ in range(4):  # more than the client's own retries: the link's loop reads the header too
            fake.fail_next("apps.connections.open", "ratelimited")
        with BackgroundServer(fake.app) as slack_server:
            settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token=fake.token, slack_app_token=fake.app_token,
                                        slack_api_url=slack_server.url + "/api/", database_url=f"sqlite:///{tmp_path}/b.db")
            runtime = build_runtime(settings, need_signing_secret=False)
            await runtime.start(run_tracker=False)
            link = SocketModeLink(runtime.app, fake.app_token, backoff=Backoff(first=0.05, cap=0.2))
            link.start()
            try:
                deadline = time.monotonic() + 60
                while not await link.connected():
                    assert time.monotonic() < deadline, "never connected"
                    await asyncio.sleep(0.05)
            finally:
                await link.close()
                await runtime.stop()
    assert len(fake.of("apps.connections.open")) == 5 and stand_in.connections == 1
