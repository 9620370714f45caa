"""Display names for a request's ids (server group, product, subnet, servers), looked up when telling
Slack (in the courier, never on the path that acks Slack) and kept for a while, so a card or a reply
speaks in names; ids stay the fallback when the cloud cannot say."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from cachetools import TTLCache

from bot.cloud.client import Cloud
from bot.cloud.errors import CloudError
from bot.cloud.models import ProductInfo
from bot.digits import ascii_int
from bot.slack.catalogue import CatalogueCache
from bot.store.models import AppRequest
from bot.store.repository import server_ids

log = logging.getLogger(__name__)


def product_words(product: ProductInfo) -> str | None:
    """"8 vCPUs · 32 GiB" (and the GPU when there is one); None when the cloud gave neither."""
    parts = []
    if product.cpu:
        parts.append(f"{product.cpu} vCPU{'' if product.cpu == '1' else 's'}")
    if (megabytes := ascii_int(product.memory, max_digits=12)) is not None:
        parts.append(f"{megabytes / 1024:g} GiB")
    if product.is_gpu and product.gpu_desc:
        parts.append(product.gpu_desc)
    return " · ".join(parts) or None


@dataclass(frozen=True)
class Names:
    group: str | None = None
    product: str | None = None
    network: str | None = None
    servers: dict[str, str] = field(default_factory=dict)  # server id → its name

    def server_list(self, ids: list[str]) -> list[str]:
        """The servers by name where known, else by id, in the order given."""
        return [self.servers.get(i) or i for i in ids]


class NameBook:
    """Names for requests, from the form's catalogue (cached briefly) and, for servers, ListServers."""

    def __init__(self, catalogue: CatalogueCache, cloud: Cloud, *, ttl_seconds: float = 600.0) -> None:
        self._catalogue = catalogue
        self._cloud = cloud
        self._subnets: TTLCache[str, str | None] = TTLCache(maxsize=512, ttl=ttl_seconds)
        self._servers: TTLCache[str, dict[str, str]] = TTLCache(maxsize=2048, ttl=ttl_seconds)

    async def of(self, request: AppRequest) -> Names:
        spec = json.loads(request.spec_json)
        try:
            catalogue = await self._catalogue.get()
        except CloudError as error:
            log.info("names for %s: the catalogue could not be read (%s); showing ids", request.id, error)
            return Names(servers=await self._server_names(request))
        group = catalogue.group(request.server_group_id)
        product = next((p for p in catalogue.products if p.product_id == spec.get("product_id")), None)
        if product is None and group is not None and group.product_info is not None:
            product = group.product_info
        subnet_id = spec.get("subnet_id")
        network = group.subnet_name if group and group.subnet_id == subnet_id and group.subnet_name else None
        if network is None and subnet_id:
            network = await self._subnet_name(subnet_id)
        return Names(group=group.name if group else None, product=product_words(product) if product else None,
                     network=network, servers=await self._server_names(request))

    async def _subnet_name(self, subnet_id: str) -> str | None:
        if subnet_id in self._subnets:
            return self._subnets[subnet_id]
        try:
            name = (await self._cloud.vpc.show_subnet(subnet_id)).name
        except CloudError:
            return None  # not cached: the next message tries again
        self._subnets[subnet_id] = name
        return name

    async def _server_names(self, request: AppRequest) -> dict[str, str]:
        ids = server_ids(request)
        if not ids:
            return {}
        known = self._servers.get(request.id, {})
        if all(i in known for i in ids):
            return known
        try:
            servers = await self._cloud.workspace.list_servers(server_group_id=request.server_group_id)
        except CloudError as error:
            log.info("server names for %s could not be read (%s); showing ids", request.id, error)
            return known
        wanted = set(ids)
        names = {s.id: s.name for s in servers if s.id in wanted and s.name}
        self._servers[request.id] = names
        return names
