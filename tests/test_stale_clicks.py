"""A click counts only for what its clicker saw: over HTTP, signed Slack requests into the running bot, with
the sandbox cloud and a fake Slack. After an unknown create, "None of these" and "This one is ours" are
bound to the candidates they were shown with; Send again waits until what the create made can no longer
show up; Reject on a decided request says who decided; the expiry warning loses its Cancel."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.lifecycle import State
from bot.reconcile import LOOKUP_SKEW, Candidates
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.store.models import AppRequest
from tests.flows import fill, final_state, flow_settings, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, OTHER_APPROVER, REQUESTER, Bot, running_bot, wait_for
from tests.specs import prepaid_body

pytestmark = pytest.mark.slow
LEASE = timedelta(seconds=90)  # SUBMIT_LEASE_SECONDS's default, which the `bot` fixture keeps
MONTHLY = {"billing": "prePaid", "period_unit": "2", "period_num": 1, "count": 1}
_STATED = re.compile(r"nothing created between (\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?) UTC and "
                     r"(\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?) UTC")


def request(bot: Bot) -> AppRequest:
    row: AppRequest = only_request(bot)
    return row


def approved_with_unknown_outcome(bot: Bot, fault: str) -> AppRequest:
    """A monthly request, approved on its card, whose create the cloud answers with a 500: carried out
    (`500-after`) or not (`500`). Returned once the bot has looked for what it made."""
    fill(bot, **MONTHLY)
    row = wait_for(lambda: request(bot).approval_ts and request(bot), what="the approval card")
    bot.sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind=fault))
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    looked: AppRequest = wait_for(lambda: (r := request(bot)).state == State.NEEDS_ATTENTION and r.lookup_at and r,
                                  what="the lookup after the unknown outcome")
    return looked


def time_passes(bot: Bot, row: AppRequest) -> datetime:
    """As if the create's window (its start, less clock skew, to its lease's end and skew) had closed: the
    start is moved back. Returns the new start, where orders placed "during" the create go."""
    assert row.submit_started_at is not None
    start = row.submit_started_at - LEASE - 2 * LOOKUP_SKEW - timedelta(seconds=5)
    bot.runtime.store.update_fields(row.id, actor="test", action="time_passes", submit_started_at=start)
    return start


def home_buttons(bot: Bot, user: str) -> dict[str, list[str]]:
    """The user's App Home as the bot publishes it when they open it: action id → the values of its buttons."""
    before = len(bot.slack.of("views.publish"))
    assert bot.event({"type": "app_home_opened", "user": user, "tab": "home"}, f"Ev{time.time_ns()}").status_code == 200
    published = wait_for(lambda: [c for c in bot.slack.of("views.publish")[before:] if c.get("user_id") == user],
                         what=f"the App Home of {user}")
    view = published[-1]["view"]
    return buttons(json.loads(view) if isinstance(view, str) else view)


def buttons(message: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for block in message.get("blocks") or []:
        elements = [*(block.get("elements") or []), *([block["accessory"]] if block.get("accessory") else [])]
        for element in elements:
            if element.get("type") == "button":
                found.setdefault(element["action_id"], []).append(element.get("value", ""))
    return found


def latest_card(bot: Bot, row: AppRequest) -> dict[str, Any]:
    updates = [c for c in bot.slack.of("chat.update")
               if c.get("channel") == APPROVAL_CHANNEL and c.get("ts") == row.approval_ts]
    if not updates:
        return {}
    blocks = updates[-1]["blocks"]
    return {"blocks": json.loads(blocks) if isinstance(blocks, str) else blocks}


def answers_to(bot: Bot, user: str) -> list[str]:
    return [str(c.get("text")) for c in bot.slack.of("chat.postEphemeral") if c.get("user") == user]


def place_twin(bot: Bot, at: datetime) -> str:
    """Someone else's Workspace order for exactly what the request asks, placed at `at`."""
    spec = prepaid_body(count=1, months=1)
    return bot.sandbox.state.place_foreign_order(service_type_code="hws.service.type.vdi", spec=spec,
                                                 at=at.timestamp(), amount=42.0).id


def test_a_stale_none_of_these_cannot_rule_out_candidates_its_clicker_never_saw(bot: Bot) -> None:
    """The review's reproduction: approver 2's App Home shows one candidate; approver 1 rules it out; two
    fitting orders show up; approver 2's old button must not rule them out, nor let the order go twice."""
    other = place_twin_of_another_size(bot.sandbox)
    row = approved_with_unknown_outcome(bot, "500")  # refused before acting: nothing of ours exists
    assert [c.id for c in Candidates.of(row).items] == [other]
    stale = home_buttons(bot, OTHER_APPROVER)[Action.NO_CANDIDATE.value]
    fresh = home_buttons(bot, APPROVER)[Action.NO_CANDIDATE.value]
    assert stale == fresh and len(stale) == 1

    bot.click(Action.NO_CANDIDATE.value, fresh[0], APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    ruled = wait_for(lambda: other in Candidates.of(r := request(bot)).ruled_out and r, what="the rule-out")
    start = time_passes(bot, ruled)
    twins = {place_twin(bot, start + timedelta(seconds=10)), place_twin(bot, start + timedelta(seconds=11))}
    bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)  # the look finds both
    wait_for(lambda: {c.id for c in Candidates.of(request(bot)).items} == twins, what="the two new candidates")
    wait_for(lambda: answers_to(bot, APPROVER), what="the answer to the first Send again")

    bot.click(Action.NO_CANDIDATE.value, stale[0], OTHER_APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    refusal = wait_for(lambda: answers_to(bot, OTHER_APPROVER), what="the refusal")[-1]
    assert "changed since this card listed it" in refusal and "nothing was done" in refusal
    audit = wait_for(lambda: [e for e in bot.runtime.store.audit_log(row.id)
                              if e.actor == OTHER_APPROVER and not e.allowed], what="the refusal's audit row")
    assert audit[-1].action == "rule_out_candidates" and (audit[-1].detail or "").startswith("not_as_shown: ")
    assert {c.id for c in Candidates.of(request(bot)).items} == twins

    before = len(answers_to(bot, APPROVER))
    bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    again = wait_for(lambda: answers_to(bot, APPROVER)[before:], what="the answer to Send again")[-1]
    assert "must not be sent again" in again
    assert len(bot.sandbox.calls("CreateAppServers")) == 1 and request(bot).state == State.NEEDS_ATTENTION


def test_this_one_is_ours_counts_only_for_the_list_it_was_shown_with(bot: Bot) -> None:
    other = place_twin_of_another_size(bot.sandbox)
    row = approved_with_unknown_outcome(bot, "500")
    stale = home_buttons(bot, OTHER_APPROVER)[Action.CHOOSE_CANDIDATE.value]
    assert len(stale) == 1 and stale[0].endswith(other)
    # An older card's button names the request and the candidate, not the list: refused, nothing linked.
    bot.click(Action.CHOOSE_CANDIDATE.value, f"{row.id} {other}", OTHER_APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    refusal = wait_for(lambda: answers_to(bot, OTHER_APPROVER), what="the refusal")[-1]
    assert "older card" in refusal and "nothing was done" in refusal
    assert request(bot).state == State.NEEDS_ATTENTION and request(bot).order_id is None

    # Approver 1 rules it out; after the window, two fitting orders are found; approver 2's old button is refused.
    bot.click(Action.NO_CANDIDATE.value, home_buttons(bot, APPROVER)[Action.NO_CANDIDATE.value][0], APPROVER,
              APPROVAL_CHANNEL, row.approval_ts)
    ruled = wait_for(lambda: other in Candidates.of(r := request(bot)).ruled_out and r, what="the rule-out")
    start = time_passes(bot, ruled)
    twins = {place_twin(bot, start + timedelta(seconds=10)), place_twin(bot, start + timedelta(seconds=11))}
    bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    wait_for(lambda: {c.id for c in Candidates.of(request(bot)).items} == twins, what="the two new candidates")
    before = len(answers_to(bot, OTHER_APPROVER))
    bot.click(Action.CHOOSE_CANDIDATE.value, stale[0], OTHER_APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    changed = wait_for(lambda: answers_to(bot, OTHER_APPROVER)[before:], what="the second refusal")[-1]
    assert "changed since this card listed it" in changed
    assert request(bot).state == State.NEEDS_ATTENTION and request(bot).order_id is None

    # The card as it stands now lists both, and links the one chosen.
    def current_choices() -> list[str]:
        listed = buttons(latest_card(bot, request(bot))).get(Action.CHOOSE_CANDIDATE.value, [])
        return listed if {v.rsplit("|", 1)[-1] for v in listed} == twins else []

    chosen = wait_for(current_choices, what="the card listing the two")[0]
    bot.click(Action.CHOOSE_CANDIDATE.value, chosen, OTHER_APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    linked = wait_for(lambda: (r := request(bot)).order_id and r, what="the link")
    assert linked.order_id == chosen.rsplit("|", 1)[-1] and len(bot.sandbox.calls("CreateAppServers")) == 1


def test_an_order_linked_to_one_request_is_refused_for_another_and_flagged_on_its_card(bot: Bot) -> None:
    """Two of our monthly creates go unanswered; one order in their windows fits both. Linked to the first by
    one approver, it is refused for the second, with a sentence to the clicker and a flag on that card."""
    rows = []
    for _ in range(2):
        before = {r.id for r in bot.runtime.store.for_requester(REQUESTER, 10)}
        fill(bot, **MONTHLY)
        row = wait_for(lambda before=before: [r for r in bot.runtime.store.for_requester(REQUESTER, 10)
                                              if r.id not in before and r.approval_ts], what="the approval card")[0]
        bot.sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
        bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
        rows.append(wait_for(lambda r=row: (f := bot.runtime.store.get(r.id)) and f.lookup_at and f,
                             what="the lookup"))
    first, second = rows
    start = time_passes(bot, first)
    bot.runtime.store.update_fields(second.id, actor="test", action="time_passes", submit_started_at=start)
    shared = place_twin(bot, start + timedelta(seconds=10))
    for row in rows:  # each look finds the one order, which fits both: an approver must say whose it is
        bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
        wait_for(lambda r=row: [c.id for c in Candidates.of(bot.runtime.store.get(r.id)).items] == [shared],
                 what="the order as a candidate")

    def choice_on_card(row: AppRequest) -> str:
        return str(wait_for(lambda: [v for v in buttons(latest_card(bot, row)).get(Action.CHOOSE_CANDIDATE.value, [])
                                     if v.endswith(shared)], what="the card's choice")[0])

    bot.click(Action.CHOOSE_CANDIDATE.value, choice_on_card(first), APPROVER, APPROVAL_CHANNEL, first.approval_ts)
    wait_for(lambda: bot.runtime.store.get(first.id).order_id == shared, what="the first link")  # type: ignore[union-attr]
    bot.click(Action.CHOOSE_CANDIDATE.value, choice_on_card(second), OTHER_APPROVER, APPROVAL_CHANNEL,
              second.approval_ts)
    refusal = wait_for(lambda: answers_to(bot, OTHER_APPROVER), what="the refusal")[-1]
    assert f"{shared} is already linked to {first.id}" in refusal
    flag = wait_for(lambda: [b for b in latest_card(bot, second).get("blocks", [])
                             if "Not linked" in json.dumps(b)], what="the flag on the second card")
    assert first.id in json.dumps(flag)
    held = bot.runtime.store.get(second.id)
    assert held is not None and held.order_id is None and held.state == State.NEEDS_ATTENTION
    assert any(e.action == "choose_candidate" and not e.allowed and e.actor == OTHER_APPROVER
               for e in bot.runtime.store.audit_log(second.id))
    assert len(bot.sandbox.calls("CreateAppServers")) == 2


def test_send_again_waits_until_what_the_create_made_can_no_longer_show_up(bot: Bot) -> None:
    row = approved_with_unknown_outcome(bot, "500")  # nothing was made, nothing else in the window
    assert row.lookup_found is False and not Candidates.of(row).items
    bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)  # at once: refused
    refusal = wait_for(lambda: answers_to(bot, APPROVER), what="the refusal")[-1]
    assert "can be sent again from" in refusal and "Nothing was sent" in refusal
    audit = wait_for(lambda: [e for e in bot.runtime.store.audit_log(row.id) if e.action == "retry" and not e.allowed],
                     what="the refusal's audit row")
    assert (audit[-1].detail or "").startswith("too_early: ")
    assert len(bot.sandbox.calls("CreateAppServers")) == 1 and request(bot).state == State.NEEDS_ATTENTION
    # The refusal, the card and App Home say from when Send again can be used, as a date each reader's Slack shows.
    resend_from = Candidates.of(row).resend_from
    assert resend_from is not None and resend_from > datetime.now(UTC)
    stamp = f"<!date^{int(resend_from.timestamp())}^"
    assert stamp in refusal
    card = wait_for(lambda: (c := latest_card(bot, request(bot))) and Action.RETRY.value in buttons(c) and c,
                    what="the card with Send again")
    assert stamp in json.dumps(card)
    assert Action.RETRY.value in home_buttons(bot, APPROVER)
    home = bot.slack.of("views.publish")[-1]["view"]
    assert stamp in (home if isinstance(home, str) else json.dumps(home))

    time_passes(bot, request(bot))
    bot.click(Action.RETRY.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    wait_for(lambda: len(bot.sandbox.calls("CreateAppServers")) == 2, what="the order sent again")
    # The audit never states a window that had not passed when it was written.
    stated = [(e, m) for e in bot.runtime.store.audit_log(row.id) for m in _STATED.finditer(e.detail or "")]
    assert stated, "the look after the window says what it covered"
    for event, match in stated:
        until = datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S" if match.group(2).count(":") == 2
                                  else "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert until <= event.at, f"{event.action} at {event.at} states a window to {until}"
    sent = next(e for e in bot.runtime.store.audit_log(row.id) if e.action == "retry_after_attention")
    assert sent.actor == APPROVER and "looked at" in (sent.detail or "")


def test_reject_on_a_decided_request_says_who_decided_and_opens_no_form(bot: Bot) -> None:
    fill(bot, **MONTHLY)
    row = wait_for(lambda: request(bot).approval_ts and request(bot), what="the approval card")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    wait_for(lambda: request(bot).decided_by == APPROVER, what="the approval")
    forms_before = len(bot.slack.of("views.open"))
    bot.click(Action.REJECT.value, row.id, OTHER_APPROVER, APPROVAL_CHANNEL, row.approval_ts)  # the stale card's Reject
    answer = wait_for(lambda: answers_to(bot, OTHER_APPROVER), what="the answer")[-1]
    assert f"<@{APPROVER}> already approved {row.id}" in answer
    audit = wait_for(lambda: [e for e in bot.runtime.store.audit_log(row.id) if e.action == "reject"], what="audit")
    assert not audit[-1].allowed and audit[-1].actor == OTHER_APPROVER
    assert len(bot.slack.of("views.open")) == forms_before


@pytest.fixture
def short_lived(slack: tuple[Any, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    # 12 s: the requester is warned 3 s before (a quarter of it)
    settings = flow_settings(slack, sandbox, sandbox_url, tmp_path, approval_ttl_hours=12 / 3600)
    with running_bot(settings, sandbox, slack[0]) as running:
        yield running


def test_the_expiry_warnings_cancel_goes_when_the_request_expires(short_lived: Bot) -> None:
    bot = short_lived
    fill(bot, **MONTHLY)
    wait_for(lambda: [c for c in bot.slack.of("chat.postMessage") if c.get("thread_ts") and "expires" in
                      str(c.get("text")) and Action.CANCEL.value in json.dumps(c.get("blocks"))],
             what="the expiry warning with Cancel")
    posted = wait_for(lambda: [e for e in bot.runtime.store.audit_log(request(bot).id)
                               if e.action == "expiry_warning_posted"], what="where the warning went")
    channel, ts = (posted[-1].detail or "").split()
    final_state(bot, State.EXPIRED)
    closed = wait_for(lambda: [c for c in bot.slack.of("chat.update") if c.get("channel") == channel and
                               c.get("ts") == ts], what="the warning edited")[-1]
    assert Action.CANCEL.value not in json.dumps(closed.get("blocks")) and "Expired" in str(closed.get("text"))
    wait_for(lambda: request(bot).expiry_warning_ts is None, what="the warning closed once")


def place_twin_of_another_size(sandbox: Sandbox) -> str:
    """A Workspace order in the same second that does not fit (another count and period): shown, never linked."""
    return sandbox.state.place_foreign_order(service_type_code="hws.service.type.vdi",
                                             spec=prepaid_body(count=5, months=2), at=time.time(), amount=42.0).id
