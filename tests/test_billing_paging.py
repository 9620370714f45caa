"""Reading billing whole: an order's line items page by page, ListResourceSpecs' marker with its limit, and a
combined transaction's orders as evidence when a create's answer was lost. Real HTTP to the sandbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.cloud.rating_models import ResourceSpecsQuery
from bot.cloud.signer import AkSkAuth
from bot.lifecycle import State
from bot.reconcile import Candidates
from bot.sandbox import Sandbox
from bot.spec import parse_spec
from bot.store.repository import RequestStore
from bot.workflow import Workflow
from tests.specs import prepaid_body
from tests.workflows import APPROVER, lost_answer, one_approver_workflow

DETAILS = "ShowCustomerOrderDetails"


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


@pytest.fixture
def workflow(store: RequestStore, cloud: Cloud) -> Workflow:
    return one_approver_workflow(store, cloud)


def our_order(sandbox: Sandbox) -> str:
    [order] = [o.id for o in sandbox.state.orders.values() if o.spec.get("server_group_id")]
    return order


def pages(sandbox: Sandbox, order_id: str) -> list[tuple[str | None, str | None]]:
    return [(c["query"].get("limit"), c["query"].get("offset")) for c in sandbox.calls(DETAILS)
            if c["path"].endswith("/" + order_id)]


# ShowCustomerOrderDetails ------------------------------------------------------------------------------


async def test_the_sandbox_gives_ten_line_items_unless_asked_and_at_most_100(sandbox: Sandbox,
                                                                             sandbox_url: str) -> None:
    cfg = sandbox.config
    order = sandbox.state.place_foreign_order(service_type_code="hws.service.type.vdi", spec=prepaid_body(),
                                              at=sandbox.state.clock(), amount=Decimal("42.00"))
    sandbox.state.extra_lines[order.id] = [{"order_line_item_id": f"x{i}"} for i in range(24)]
    path = f"/v2/orders/customer-orders/details/{order.id}"
    async with httpx.AsyncClient(base_url=sandbox_url, auth=AkSkAuth(cfg.access_key, cfg.secret_key)
                                 .with_domain(cfg.domain_id)) as client:
        default = (await client.get(path)).json()
        last = (await client.get(path, params={"limit": 100, "offset": 20})).json()
        too_many = await client.get(path, params={"limit": 101})
    assert default["total_count"] == 25 and len(default["order_line_items"]) == 10
    assert len(last["order_line_items"]) == 5 and last["order_line_items"][-1]["service_type_code"] == \
        "hws.service.type.vdi"
    assert too_many.status_code == 400 and too_many.json()["error_code"] == "CBC.0100"


async def test_an_order_is_read_with_all_its_line_items_100_at_a_time(cloud: Cloud, sandbox: Sandbox) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(count=3)))
    assert created.order_id
    sandbox.state.extra_lines[created.order_id] = [{"order_line_item_id": f"x{i}", "service_type_code": "other"}
                                                   for i in range(230)]
    details = await cloud.billing.show_order(created.order_id)
    assert len(details.order_line_items) == 231 and details.total_count == 231
    assert details.order_line_items[-1].subscription_num == 3  # the app servers' line, last of all
    assert pages(sandbox, created.order_id) == [("100", "0"), ("100", "100"), ("100", "200")]
    small = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(count=1)))
    assert small.order_id
    assert len((await cloud.billing.show_order(small.order_id)).order_line_items) == 1
    assert pages(sandbox, small.order_id) == [("100", "0")]  # one page when it holds everything


async def test_a_lost_create_is_found_by_a_line_item_past_the_first_ten(workflow: Workflow, store: RequestStore,
                                                                        sandbox: Sandbox) -> None:
    sandbox.config.order_lines_before = 12  # the order lists 12 other products before the app servers
    try:
        request_id = await lost_answer(workflow, sandbox, prepaid_body(count=2, months=3))
    finally:
        sandbox.config.order_lines_before = 0
    row = store.get(request_id)
    assert row is not None and row.lookup_found is True and row.order_id == our_order(sandbox)
    assert row.state == State.SUBMITTED


# ListResourceSpecs ---------------------------------------------------------------------------------------


def specs_query(**extra: Any) -> ResourceSpecsQuery:
    return ResourceSpecsQuery(cloud_service_type="hws.service.type.vdi",
                              resource_type="hws.resource.type.workspace.appstream", region_code="cn-north-4",
                              charge_mode="1", **extra)


async def test_a_marker_is_always_sent_with_a_limit(cloud: Cloud, sandbox: Sandbox) -> None:
    first = await cloud.rating.list_resource_specs(specs_query(limit=2))
    assert first.page_info and first.page_info.next_marker and len(first.cloud_service_basics) == 2
    rest = await cloud.rating.list_resource_specs(specs_query(marker=first.page_info.next_marker))
    assert len(rest.cloud_service_basics) == 1
    assert {b.resource_spec for b in first.cloud_service_basics + rest.cloud_service_basics} == {
        "workspace.appstream.general.xlarge.2", "workspace.appstream.general.xlarge.4",
        "workspace.appstream.graphics.2xlarge.8"}
    sent = [c["body"] for c in sandbox.calls("ListResourceSpecs")]
    assert sent[1]["marker"] == first.page_info.next_marker and sent[1]["limit"] == 100
    assert all("limit" in body for body in sent if "marker" in body)
    assert "limit" not in specs_query().body()  # no marker, nothing added


async def test_the_sandbox_ignores_a_marker_without_a_limit(sandbox: Sandbox, sandbox_url: str) -> None:
    cfg = sandbox.config
    body = specs_query().body()
    async with httpx.AsyncClient(base_url=sandbox_url, auth=AkSkAuth(cfg.access_key, cfg.secret_key)
                                 .with_domain(cfg.domain_id)) as client:
        alone = await client.post("/v2/products/resource-specs-query", json={**body, "marker": "2"})
        paired = await client.post("/v2/products/resource-specs-query", json={**body, "marker": "2", "limit": 2})
    assert len(alone.json()["cloud_service_basics"]) == 3  # the first page again, as BSS answers
    assert len(paired.json()["cloud_service_basics"]) == 1


# Combined transactions -------------------------------------------------------------------------------


async def test_a_lost_create_billed_in_a_combined_transaction_is_linked_to_its_workspace_order(
        workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    sandbox.config.combined_orders = True
    try:
        request_id = await lost_answer(workflow, sandbox, prepaid_body(count=2, months=3))
    finally:
        sandbox.config.combined_orders = False
    ours = our_order(sandbox)
    parent = sandbox.state.parent_order[ours]
    row = store.get(request_id)
    assert row is not None and row.lookup_found is True and row.order_id == ours and row.state == State.SUBMITTED
    # BSS listed only the transaction, which named its orders; the other service's order was not even read.
    other = next(o for o in sandbox.state.sub_orders[parent] if o != ours)
    read = {c["path"].rsplit("/", 1)[1] for c in sandbox.calls(DETAILS)}
    assert ours in read and other not in read and parent not in read


async def test_combined_transactions_orders_are_candidates_like_plain_orders(
        workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    # Someone else bought exactly the same in the same second, also in a combined transaction.
    twin = sandbox.state.place_foreign_order(service_type_code="hws.service.type.vdi", spec=prepaid_body(count=1),
                                             at=sandbox.state.clock(), amount=Decimal("42.00"))
    twin_parent = sandbox.state.combine(twin, "hws.service.type.ebs")
    sandbox.config.combined_orders = True
    try:
        request_id = await lost_answer(workflow, sandbox, prepaid_body(count=1))
    finally:
        sandbox.config.combined_orders = False
    row = store.get(request_id)
    assert row is not None and row.order_id is None and row.state == State.NEEDS_ATTENTION
    items = Candidates.of(row).items
    ours = next(o.id for o in sandbox.state.orders.values() if o.spec.get("server_group_id") and o.id != twin.id)
    assert sorted(c.id for c in items) == sorted([twin.id, ours]) and all(c.fits for c in items)
    assert twin_parent.id not in {c.id for c in items}
    # The approver's choice is bound to the candidates their card listed.
    assert (await workflow.choose_candidate(request_id, APPROVER, ours, Candidates.of(row).key())).ok
    linked = store.get(request_id)
    assert linked is not None and linked.order_id == ours and linked.state == State.SUBMITTED
