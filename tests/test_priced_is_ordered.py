"""What is priced is what is ordered: the create body carries the chosen product's own flavor (or none), the
card names that product and the estimate says what it covers and what it leaves out."""

from __future__ import annotations

import json

import pytest

from bot.cloud.models import ProductInfo
from bot.lifecycle import State
from bot.sandbox.seed import PRODUCTS, server_groups
from bot.slack import forms
from tests.flows import fill, final_state, only_request
from tests.harness import APPROVAL_CHANNEL, Bot, wait_for

GROUP_PRODUCT, OTHER_PRODUCT = PRODUCTS[0], PRODUCTS[1]


def test_the_flavor_sent_is_the_chosen_products_or_none() -> None:
    context = forms.ModalContext(flavor_id=GROUP_PRODUCT["flavor_id"], flavor_product_id=GROUP_PRODUCT["product_id"])
    listed = [ProductInfo(product_id=p["product_id"], flavor_id=p["flavor_id"]) for p in PRODUCTS]
    assert forms.product_flavor(GROUP_PRODUCT["product_id"], context) == GROUP_PRODUCT["flavor_id"]
    assert forms.product_flavor(OTHER_PRODUCT["product_id"], context, listed) == OTHER_PRODUCT["flavor_id"]
    # Another product the catalogue does not list: no flavor rather than the group's.
    assert forms.product_flavor(OTHER_PRODUCT["product_id"], context) is None
    assert forms.product_flavor("workspace.unknown", context, listed) is None


@pytest.mark.slow
def test_another_product_than_the_groups_is_ordered_and_priced_as_itself(bot: Bot) -> None:
    fill(bot, product=OTHER_PRODUCT["product_id"], count=1)  # the group's product is PRODUCTS[0]
    done = final_state(bot, State.SUCCEEDED, State.FAILED, State.SUBMIT_FAILED, State.PARTLY_DONE)
    assert done.state == State.SUCCEEDED, done.outcome_sentence
    [create] = bot.sandbox.calls("CreateAppServers")
    assert create["body"]["product_id"] == OTHER_PRODUCT["product_id"]
    assert create["body"]["flavor_id"] == OTHER_PRODUCT["flavor_id"]  # never the group's c7.xlarge.2
    quote = json.loads(done.price_json or "{}")
    rated = bot.sandbox.calls("ListOnDemandResourceRatings")[-1]["body"]
    assert OTHER_PRODUCT["product_id"] in json.dumps(rated) and GROUP_PRODUCT["product_id"] not in json.dumps(rated)
    assert quote["lines"][0]["label"].endswith(OTHER_PRODUCT["product_id"])


@pytest.mark.slow
def test_the_estimate_says_what_it_covers_and_that_a_marketplace_images_fee_is_not_included(bot: Bot) -> None:
    design = server_groups()[1]
    assert design.get("image_product_id")
    view = bot.open_form()
    view = bot.choose_group(view, design["id"])
    response = bot.submit_form(view, {"group": design["id"], "product": design["product_id"], "az": "cn-north-4a",
                                      "disk_type": "SSD", "disk_size": 100, "count": 2, "billing": "prePaid",
                                      "period_unit": "2", "period_num": 3, "reason": "Render farm"})
    assert response.status_code == 200
    row = final_state(bot, State.PENDING_APPROVAL)
    assert json.loads(row.price_json or "{}")["image_product_id"] == design["image_product_id"]
    card = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL],
                    what="the approval card")[0]
    shown = json.dumps(card["blocks"], ensure_ascii=False)
    assert "It covers 2 app servers of " in shown and "their SSD 100 GB system disks for 3 months." in shown
    assert (f"Not included: the fee of the group's paid Marketplace image (product `{design['image_product_id']}`)"
            in shown)
    assert only_request(bot).id == row.id
