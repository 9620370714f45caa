"""The CreateAppServers contract: every valid body round-trips; every rule refuses what it must."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.spec import DISK_TYPES, SpecError, parse_spec

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=40)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "createApps",
        "server_group_id": draw(ids),
        "subscription_num": draw(st.integers(1, 100)),
        "product_id": draw(ids),
        "root_volume": {"type": draw(st.sampled_from(DISK_TYPES)), "size": draw(st.integers(1, 102)) * 10},
        "subnet_id": draw(ids),
        "vpc_id": draw(ids),
    }
    optional = {
        "flavor_id": ids, "availability_zone": ids, "ou_name": ids,
        "os_type": st.just("Windows"), "update_access_agent": st.booleans(),
        "nics": st.lists(st.fixed_dictionaries({}, optional={"subnet_id": ids, "ip_address": ids}), min_size=1,
                         max_size=5),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    prepaid = draw(st.booleans())
    if prepaid:
        unit = draw(st.sampled_from([2, 3]))
        body["create_server_extend_param"] = {
            "charging_mode": "prePaid", "period_type": unit,
            "period_num": draw(st.integers(1, 9 if unit == 2 else 3)),
            "is_auto_pay": draw(st.booleans()), "is_auto_renew": draw(st.booleans()),
        }
    else:
        if draw(st.booleans()):
            body["create_server_extend_param"] = {"charging_mode": "postPaid"}
            if draw(st.booleans()):
                body["create_server_extend_param"]["is_auto_renew"] = draw(st.booleans())
        if draw(st.booleans()):
            body["scheduler_hints"] = {"dedicated_host_id": draw(ids), "tenancy": "dedicated"}
    return body


@given(valid_bodies())
@settings(max_examples=300)
def test_every_valid_body_round_trips_exactly(body: dict[str, Any]) -> None:
    spec = parse_spec(body)
    assert spec.to_api_body() == body
    assert parse_spec(spec.to_api_body()) == spec
    assert parse_spec(spec.to_api_body()).spec_hash() == spec.spec_hash()


def _base(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"server_group_id": "sg", "subscription_num": 1, "product_id": "p",
                            "root_volume": {"type": "SAS", "size": 80}, "subnet_id": "s", "vpc_id": "v"}
    body.update(changes)
    return body


def _errors(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as refused:
        parse_spec(body)
    return refused.value.errors


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=101)))
def test_subscription_num_outside_1_to_100(count: int) -> None:
    assert "between 1 and 100" in _errors(_base(subscription_num=count))["subscription_num"]


@given(st.integers(-100, 2000).filter(lambda n: n % 10 or not 10 <= n <= 1024))
def test_disk_size_must_be_a_multiple_of_ten_in_range(size: int) -> None:
    assert "multiple of 10" in _errors(_base(root_volume={"type": "SAS", "size": size}))["root_volume.size"]


@given(st.text(min_size=1, max_size=10).filter(lambda t: t not in DISK_TYPES))
def test_disk_type_must_be_known(kind: str) -> None:
    assert "ESSD, SSD, GPSSD, SAS, SATA" in _errors(_base(root_volume={"type": kind, "size": 80}))["root_volume.type"]


@pytest.mark.parametrize(("field", "limit"), [("server_group_id", 128), ("product_id", 128), ("subnet_id", 255),
                                              ("vpc_id", 255)])
def test_required_ids_and_their_length_limits(field: str, limit: int) -> None:
    assert "is required" in _errors(_base(**{field: ""}))[field]
    assert "is required" in _errors(_base(**{field: None}))[field]
    missing = _base()
    del missing[field]
    assert "is required" in _errors(missing)[field]
    assert f"at most {limit}" in _errors(_base(**{field: "x" * (limit + 1)}))[field]
    assert parse_spec(_base(**{field: "x" * limit}))


def test_type_os_tenancy_and_nics() -> None:
    assert "createApps" in _errors(_base(type="createDesktops"))["type"]
    assert "Only Windows" in _errors(_base(os_type="Linux"))["os_type"]
    assert "dedicated" in _errors(_base(scheduler_hints={"tenancy": "shared"}))["scheduler_hints.tenancy"]
    assert "At most 5" in _errors(_base(nics=[{"subnet_id": "s"}] * 6))["nics"]
    assert "not a field" in _errors(_base(server_name="web-1"))["server_name"]


@given(st.sampled_from([(2, 0), (2, 10), (3, 0), (3, 4), (2, -1)]))
def test_prepaid_period_limits(period: tuple[int, int]) -> None:
    unit, num = period
    errors = _errors(_base(create_server_extend_param={"charging_mode": "prePaid", "period_type": unit, "period_num": num}))
    assert "create_server_extend_param.period_num" in errors


def test_prepaid_needs_a_period_unit_and_refuses_dedicated_hosts() -> None:
    errors = _errors(_base(create_server_extend_param={"charging_mode": "prePaid", "period_num": 1}))
    assert "month or year" in errors["create_server_extend_param.period_type"]
    errors = _errors(_base(create_server_extend_param={"charging_mode": "prePaid", "period_type": 2, "period_num": 1},
                           scheduler_hints={"dedicated_host_id": "h", "tenancy": "dedicated"}))
    assert "dedicated host" in errors["scheduler_hints"]


@pytest.mark.parametrize("field", ["period_type", "period_num", "is_auto_pay"])
def test_postpaid_refuses_prepaid_only_fields(field: str) -> None:
    value = True if field.startswith("is_") else 2
    errors = _errors(_base(create_server_extend_param={"charging_mode": "postPaid", field: value}))
    assert "only applies to yearly/monthly" in errors[f"create_server_extend_param.{field}"]


@pytest.mark.parametrize("mode", ["postPaid", None])
def test_auto_renew_is_accepted_with_pay_per_use(mode: str | None) -> None:
    extend: dict[str, Any] = {"is_auto_renew": True}
    if mode:
        extend["charging_mode"] = mode
    spec = parse_spec(_base(create_server_extend_param=extend))
    assert not spec.is_prepaid and spec.to_api_body()["create_server_extend_param"]["is_auto_renew"] is True


@pytest.mark.parametrize(("path", "limit"), [
    ("flavor_id", 255), ("availability_zone", 255), ("nics.0.ip_address", 255), ("root_volume.cluster_id", 255),
    ("scheduler_hints.dedicated_host_id", 255), ("nics.0.subnet_id", 255),
])
def test_optional_ids_and_their_length_limits(path: str, limit: int) -> None:
    def body_with(value: str) -> dict[str, Any]:
        body = _base(type="createApps", nics=[{}], scheduler_hints={"tenancy": "dedicated"})
        *parents, name = path.split(".")
        target: Any = body
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[name] = value
        return body

    assert f"at most {limit}" in _errors(body_with("x" * (limit + 1)))[path]
    assert parse_spec(body_with("x" * limit)).to_api_body() == body_with("x" * limit)


def test_a_nic_needs_no_subnet() -> None:
    assert parse_spec(_base(nics=[{"ip_address": "192.168.0.10"}, {}])).nics is not None


def test_unknown_charging_mode() -> None:
    errors = _errors(_base(create_server_extend_param={"charging_mode": "spot"}))
    assert "prePaid" in errors["create_server_extend_param.charging_mode"]


def test_numbers_from_form_text_are_accepted_but_not_fractions_or_words() -> None:
    assert parse_spec(_base(subscription_num="3", root_volume={"type": "SAS", "size": "80"})).subscription_num == 3
    assert "whole number" in _errors(_base(subscription_num="three"))["subscription_num"]
    assert "whole number" in _errors(_base(subscription_num=2.5))["subscription_num"]
    assert "whole number" in _errors(_base(subscription_num=True))["subscription_num"]


def test_serialization_leaves_out_what_is_unset() -> None:
    assert parse_spec(_base()).to_api_body() == {"type": "createApps", **_base()}
