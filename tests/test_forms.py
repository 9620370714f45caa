"""The create modal's pure parts: building it within Slack's limits, reading every kind of empty value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cloud.models import AvailabilityZone, ProductInfo, ServerGroup, VolumeType
from bot.sandbox import seed
from bot.slack import forms
from bot.slack.catalogue import CatalogueCache
from bot.slack.ids import Action, Block

CATALOGUE = forms.Catalogue(
    [ServerGroup.model_validate(g) for g in seed.server_groups()],
    [AvailabilityZone.model_validate(z) for z in seed.AVAILABILITY_ZONES],
    [ProductInfo.model_validate(p) for p in seed.PRODUCTS],
    [VolumeType.model_validate(v) for v in seed.VOLUME_TYPES],
)


def view_json(form: forms.FormValues, **catalogue: Any) -> dict[str, Any]:
    cat = forms.Catalogue(**{**CATALOGUE.__dict__, **catalogue})
    context = forms.ModalContext(channel_id="C1", group_id=form.group_id, subnet_id="s", vpc_id="v")
    return forms.create_view(cat, form, context, sandbox=False).to_dict()


def block_ids(view: dict[str, Any]) -> list[str]:
    return [b.get("block_id") for b in view["blocks"] if b.get("block_id")]


def test_billing_changes_the_fields() -> None:
    postpaid = block_ids(view_json(forms.FormValues()))
    prepaid = block_ids(view_json(forms.FormValues(billing=forms.PREPAID)))
    assert Block.DEDICATED_HOST.value in postpaid and Block.PERIOD_NUM.value not in postpaid
    assert {Block.PERIOD_UNIT.value, Block.PERIOD_NUM.value, Block.PREPAID_OPTIONS.value} <= set(prepaid)
    assert Block.DEDICATED_HOST.value not in prepaid


def test_zones_where_the_product_is_sold_out_are_hidden() -> None:
    gpu = "workspace.appstream.graphics.2xlarge.8"
    text = json.dumps(view_json(forms.FormValues(product_id=gpu)))
    assert "cn-north-4a" in text and "cn-north-4c" not in text
    assert "cn-north-4c" in json.dumps(view_json(forms.FormValues(product_id="workspace.appstream.general.xlarge.2")))


def test_product_options_read_as_words_with_the_billing_given_and_the_id_as_description() -> None:
    gpu = CATALOGUE.products[2]
    assert forms.product_label(gpu) == "8 vCPUs · 64 GiB · GPU 1 x NVIDIA T4"  # no billing given, none said
    assert forms.product_label(gpu, forms.PREPAID) == "8 vCPUs · 64 GiB · GPU 1 x NVIDIA T4 · yearly/monthly"
    small = ProductInfo(product_id="p", cpu="1", memory="1536", is_gpu=True, gpu_desc="NVIDIA A10 GPU")
    assert forms.product_label(small, forms.POSTPAID) == "1 vCPU · 1.5 GiB · NVIDIA A10 GPU · pay-per-use"
    assert forms.product_label(ProductInfo(product_id="p", descriptions="Office, 2 cores")) == "Office, 2 cores"
    long_id = "workspace.appstream." + "x" * 100
    option = forms.product_option(ProductInfo(product_id=long_id, cpu="4", memory="8192")).to_dict()
    assert option["value"] == long_id and option["text"]["text"] == "4 vCPUs · 8 GiB"
    assert len(option["description"]["text"]) == 75 and option["description"]["text"].endswith("…")


def test_the_network_note_names_first_and_never_repeats_an_id() -> None:
    named = forms.network_note(forms.ModalContext(group_id="g", subnet_id="s-1", subnet_name="office<net",
                                                  subnet_cidr="10.0.0.0/24", vpc_id="v-1"))
    assert [e.text for e in named] == [":globe_with_meridians: Subnet *office&lt;net* (10.0.0.0/24)",
                                       "Subnet ID s-1 · VPC ID v-1"]
    unnamed = forms.network_note(forms.ModalContext(group_id="g", subnet_id="s-1", vpc_id="v-1"))
    assert [e.text for e in unnamed] == [":globe_with_meridians: Subnet `s-1`", "VPC ID v-1"]
    failed = forms.network_note(forms.ModalContext(group_id="g", subnet_id="s-1", network_error="VPC said no."))
    assert [e.text for e in failed] == [":globe_with_meridians: VPC said no."]


def test_the_reason_is_required_in_the_form_when_every_such_request_waits() -> None:
    def reason(billing: str, rules: forms.ApprovalRules) -> dict[str, Any]:
        view = forms.create_view(CATALOGUE, forms.FormValues(billing=billing), forms.ModalContext(), sandbox=False,
                                 approval=rules).to_dict()
        return next(b for b in view["blocks"] if b.get("block_id") == Block.REASON.value)

    assert reason(forms.PREPAID, forms.ApprovalRules())["optional"] is False
    assert reason(forms.POSTPAID, forms.ApprovalRules(max_servers=5))["optional"] is True
    assert reason(forms.POSTPAID, forms.ApprovalRules(max_servers=0))["optional"] is False  # every one waits
    assert reason(forms.POSTPAID, forms.ApprovalRules(postpaid_always=True))["optional"] is False
    assert reason(forms.POSTPAID, forms.ApprovalRules())["hint"]["text"] == (
        "Needed when the request waits for an approver.")


@pytest.mark.parametrize(("unit", "typed", "bounds", "shown"), [
    ("2", "9", ("1", "9"), "9"), ("3", "9", ("1", "3"), "3"), ("3", "0", ("1", "3"), "1"), (None, "x", ("1", "9"), "1"),
    ("7", None, ("1", "9"), "1")])
def test_the_period_length_shows_within_its_units_bounds(unit: str | None, typed: str | None,
                                                        bounds: tuple[str, str], shown: str) -> None:
    view = view_json(forms.FormValues(billing=forms.PREPAID, period_unit=unit, period_num=typed))
    element = next(b for b in view["blocks"] if b.get("block_id") == Block.PERIOD_NUM.value)["element"]
    assert (element["min_value"], element["max_value"], element["initial_value"]) == (*bounds, shown)


def test_over_100_groups_use_an_external_select() -> None:
    many = [ServerGroup.model_validate(g) for g in seed.server_groups(150)]
    element = next(b for b in view_json(forms.FormValues(), groups=many)["blocks"]
                   if b.get("block_id") == Block.GROUP.value)["element"]
    assert element["type"] == "external_select" and element["action_id"] == Action.GROUP_SELECT.value
    few = next(b for b in view_json(forms.FormValues())["blocks"] if b.get("block_id") == Block.GROUP.value)["element"]
    assert few["type"] == "static_select"


@pytest.mark.parametrize("state", [None, {}, [], "x", {"group": None}, {"group": {}}, {"group": {"x": None}},
                                   {"count": {"value": {"type": "number_input"}}},
                                   {"count": {"value": {"type": "number_input", "value": "   "}}},
                                   {"group": {"group_select": {"type": "static_select", "selected_option": None}}},
                                   {"prepaid_options": {"value": {"type": "checkboxes", "selected_options": None}}},
                                   {"reason": {"value": {"type": "plain_text_input", "value": None}}}])
def test_blank_missing_and_null_values_read_as_empty(state: Any) -> None:
    form = forms.read_form(state)
    assert form.group_id is None and form.count is None and form.billing == forms.POSTPAID
    assert form.reason is None and form.auto_pay is False


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=15), children,
                                                                                       max_size=4), max_leaves=20))
def test_any_state_shape_reads_without_an_exception(state: Any) -> None:
    form = forms.read_form(state)
    errors = forms.modal_errors({}, form, forms.ModalContext())
    assert isinstance(errors, dict)


def test_a_reason_longer_than_the_field_allows_is_an_inline_error() -> None:
    context = forms.ModalContext(group_id="g")
    assert forms.modal_errors({}, forms.FormValues(group_id="g", reason="x" * forms.REASON_LIMIT), context) == {}
    errors = forms.modal_errors({}, forms.FormValues(group_id="g", reason="x" * 501), context)
    assert errors == {Block.REASON.value: "At most 500 characters, please; this is 501."}


def test_prefill_from_the_command_line() -> None:
    form = forms.parse_prefill('count=3 years=2 group=office-apps auto_pay=yes reason="Q4 hires"', CATALOGUE.groups)
    assert (form.count, form.billing, form.period_unit, form.period_num) == ("3", forms.PREPAID, "3", "2")
    assert form.group_id == CATALOGUE.groups[0].id and form.auto_pay and form.reason == "Q4 hires"
    with pytest.raises(forms.PrefillError, match="billing is"):
        forms.parse_prefill("billing=free")
    with pytest.raises(forms.PrefillError, match="could not read"):
        forms.parse_prefill('reason="unclosed')


def test_private_metadata_stays_small_and_survives_garbage() -> None:
    context = forms.ModalContext(channel_id="C" * 20, group_id="g" * 128, group_name="n" * 255, subnet_id="s" * 255,
                                 subnet_name="m" * 64, subnet_cidr="c" * 43, vpc_id="v" * 255, ou_name="o" * 255,
                                 os_type="Windows", flavor_id="f" * 128, network_error="e" * 400)
    assert len(context.dump()) < 3000
    assert forms.ModalContext.load("not json") == forms.ModalContext()
    assert forms.ModalContext.load(None) == forms.ModalContext()


def test_a_rendered_form_is_reused_for_its_catalogue_with_each_channel_in_its_metadata() -> None:
    cache = CatalogueCache(cloud=None)  # type: ignore[arg-type]  # rendering never calls the cloud
    form = forms.FormValues(billing=forms.PREPAID)
    here = cache.create_form(CATALOGUE, form, forms.ModalContext(channel_id="C1"), sandbox=False)
    there = cache.create_form(CATALOGUE, form, forms.ModalContext(channel_id="C2"), sandbox=False)
    assert here["blocks"] is there["blocks"]  # rendered once
    assert forms.ModalContext.load(here["private_metadata"]).channel_id == "C1"
    assert forms.ModalContext.load(there["private_metadata"]).channel_id == "C2"
    fresh = forms.Catalogue(**CATALOGUE.__dict__)  # the catalogue was read again from the cloud
    again = cache.create_form(fresh, form, forms.ModalContext(channel_id="C1"), sandbox=False)
    assert again["blocks"] is not here["blocks"] and again == here
    other = cache.create_form(fresh, forms.FormValues(), forms.ModalContext(channel_id="C1"), sandbox=False)
    assert block_ids(other) != block_ids(here)
    expected = forms.create_view(CATALOGUE, form, forms.ModalContext(channel_id="C1"), sandbox=False).to_dict()
    assert here == expected
