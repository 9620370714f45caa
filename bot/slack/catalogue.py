"""What the modal offers (groups, zones, products, disk types), read from the cloud and kept briefly."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from bot.cloud.client import Cloud
from bot.cloud.errors import CloudError, describe
from bot.slack.forms import ApprovalRules, Catalogue, FormValues, ModalContext, create_view

RENDERED_FORMS = 256


class CatalogueCache:
    def __init__(self, cloud: Cloud, ttl_seconds: float = 60.0, max_servers: int = 100,
                 approval: ApprovalRules | None = None) -> None:
        self._cloud = cloud
        self._max_servers = max_servers  # MAX_SERVERS_PER_REQUEST, the form's own limit
        self._approval = approval or ApprovalRules()  # which requests wait for an approver: the reason's hint
        self._ttl = ttl_seconds
        self._value: tuple[float, Catalogue] | None = None
        self._lock = asyncio.Lock()
        self._rendered_for: Catalogue | None = None
        self._rendered: OrderedDict[tuple[str, str, bool], dict[str, Any]] = OrderedDict()

    def fresh(self) -> Catalogue | None:
        """The catalogue when a fresh copy is cached (no cloud call, no wait); None otherwise."""
        value = self._value
        return value[1] if value and time.monotonic() - value[0] < self._ttl else None

    def last(self) -> Catalogue | None:
        """The catalogue last read, however old (a product's flavor does not change); None before any."""
        value = self._value
        return value[1] if value else None

    async def get(self) -> Catalogue:
        async with self._lock:
            if self._value and time.monotonic() - self._value[0] < self._ttl:
                return self._value[1]
            ws = self._cloud.workspace
            groups, zones, products, volumes = await asyncio.gather(
                ws.list_server_groups(), ws.list_availability_zones(), ws.list_products(), ws.list_volume_types())
            catalogue = Catalogue(groups, zones.availability_zones, products.products, volumes.volume_types)
            self._value = (time.monotonic(), catalogue)
            return catalogue

    def create_form(self, catalogue: Catalogue, form: FormValues, context: ModalContext, *,
                    sandbox: bool) -> dict[str, Any]:
        """The create form as Slack's JSON. Building and validating a catalogue's worth of Block Kit options
        is most of the CPU of opening the form, so each rendering is kept for its catalogue and reused
        for the same form and context; the channel only changes `private_metadata`."""
        if self._rendered_for is not catalogue:
            self._rendered_for = catalogue
            self._rendered.clear()
        anywhere = context.model_copy(update={"channel_id": None})
        key = (form.model_dump_json(), anywhere.dump(), sandbox)
        view = self._rendered.get(key)
        if view is None:
            view = create_view(catalogue, form, anywhere, sandbox=sandbox, max_servers=self._max_servers,
                               approval=self._approval).to_dict()
            self._rendered[key] = view
            if len(self._rendered) > RENDERED_FORMS:
                self._rendered.popitem(last=False)
        else:
            self._rendered.move_to_end(key)
        return {**view, "private_metadata": context.dump()}

    async def prefill_from_group(self, group_id: str, form: FormValues, context: ModalContext) -> tuple[FormValues,
                                                                                                          ModalContext]:
        """Choosing a group fills product, disk, subnet (its name and range too), VPC (subnet lookup) and OU from it."""
        try:
            group = await self._cloud.workspace.show_server_group(group_id)
        except CloudError as error:
            return form, context.model_copy(update={"group_id": group_id, "network_error": describe(error)})
        info = group.product_info
        vpc_id, subnet_name, cidr, network_error = None, group.subnet_name, None, None
        if group.subnet_id:
            try:
                subnet = await self._cloud.vpc.show_subnet(group.subnet_id)
                vpc_id, subnet_name, cidr = subnet.vpc_id, subnet.name or subnet_name, subnet.cidr
            except CloudError as error:
                network_error = f"The group's subnet could not be looked up: {describe(error)}"
        else:
            network_error = "This server group has no subnet, so servers cannot be created in it."
        new_context = context.model_copy(update={
            "group_id": group.id, "group_name": group.name, "subnet_id": group.subnet_id, "subnet_name": subnet_name,
            "subnet_cidr": cidr, "vpc_id": vpc_id,
            "ou_name": group.ou_name, "os_type": group.os_type, "flavor_id": info.flavor_id if info else None,
            "flavor_product_id": (info.product_id if info else None) or group.product_id,
            "image_product_id": group.image_product_id,
            "network_error": network_error,
        })
        new_form = form.model_copy(update={
            "group_id": group.id,
            "product_id": group.product_id or (info.product_id if info else None) or form.product_id,
            "disk_type": group.system_disk_type or form.disk_type,
            "disk_size": str(group.system_disk_size) if group.system_disk_size else form.disk_size,
        })
        if not form.availability_zone:
            catalogue = await self.get()
            default = next((z for z in catalogue.zones if z.default_availability_zone
                            and (not new_form.product_id or z.sells(new_form.product_id))), None)
            if default:
                new_form = new_form.model_copy(update={"availability_zone": default.availability_zone})
        return new_form, new_context
