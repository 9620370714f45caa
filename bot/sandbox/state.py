"""What the sandbox cloud remembers: server groups, servers, jobs, orders, quota and balance.

Jobs and orders move with the clock, computed when they are read, so no background task is needed:
a job is initializing (3) for the first third of its time, processing (2) until its end, then success
(1) or failed (0); each server has a sub-job that finishes at its own share of that time. An order
waits in 6 until paid, then is processing (3) for a while and completed (5).
"""

from __future__ import annotations

import random
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.sandbox import prices, seed

WINDOWS = "Windows"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass
class SandboxConfig:
    access_key: str = "SANDBOX-AK"
    secret_key: str = "SANDBOX-SK"
    security_token: str | None = None
    project_id: str = "5a4b3c2d1e0f4a5b8c7d6e5f4a3b2c1d"
    domain_id: str = "0f1e2d3c4b5a49687766554433221100"
    region: str = "cn-north-4"
    iam_user: str = "sandbox-admin"
    iam_password: str = "sandbox-password"
    iam_domain: str = "sandbox-account"
    token_ttl_seconds: float = 24 * 3600
    job_seconds: float = 6.0
    order_seconds: float = 6.0
    payment_window_seconds: float = 7 * 24 * 3600
    instance_quota: int = 200
    balance: float = 1_000_000.0
    extra_server_groups: int = 0
    duplicate_project_names: bool = False
    # A yearly/monthly create answers with a job as well as the order (as the API's own example does);
    # the job builds the servers once the order is paid.
    order_answers_with_job: bool = False
    list_no_domains: bool = False  # KeystoneListAuthDomains answers an empty list
    # A yearly/monthly create is billed as a combined transaction: a parent order listing the Workspace
    # order and another service's order in `sub_order_infos` (the create still answers the Workspace order).
    combined_orders: bool = False
    # A yearly/monthly order lists this many line items of other products before its own (bought with it).
    order_lines_before: int = 0
    # A customer discount BSS's price inquiries offer as the best one (0.1 = 10 % off); 0: none. The same
    # discount is listed for every order placed meanwhile (ListOrderDiscounts), taken per line as priced.
    discount_rate: float = 0.0
    discount_name: str = "Enterprise contract discount"
    # The account may read orders' discounts (the IAM action billing:contract:viewDiscount).
    can_view_discounts: bool = True
    # An enterprise member whose finance a master account hosts: PayOrders only makes a proxy payment order.
    finance_hosted: bool = False

@dataclass
class Server:
    id: str
    name: str
    group_id: str
    product_id: str
    availability_zone: str
    create_time: float
    charging_mode: str
    job_id: str | None = None
    order_id: str | None = None
    status: str = "UNREGISTER"
    vm_status: str = "BUILD"

    def as_api(self, group_name: str) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "machine_name": self.name.upper()[:15],
            "server_group_id": self.group_id, "server_group_name": group_name,
            "status": self.status, "vm_status": self.vm_status, "create_time": iso(self.create_time),
            "availability_zone": self.availability_zone, "order_id": self.order_id, "job_id": self.job_id,
            "job_type": "CREATE_SERVER", "os_type": WINDOWS, "maintain_status": False,
            "metadata": {"charging_mode": "1" if self.charging_mode == "prePaid" else "0",
                         "metering.order_id": self.order_id or "", "metering.product_id": self.product_id},
        }


@dataclass
class Job:
    id: str
    created: float
    duration: float
    server_ids: list[str]
    fails: bool
    sub_job_ids: list[str] = field(default_factory=list)
    # Sub-job statuses forced by a test (None: the cloud gives no status yet), by sub-job index.
    status_overrides: dict[int, str | None] = field(default_factory=dict)

    def sub_job_end(self, index: int) -> float:
        return self.created + self.duration * (index + 1) / len(self.server_ids)

    def sub_status(self, index: int, now: float) -> str:
        if now < self.created + self.duration / 3:
            return "WAITING"
        if now < self.sub_job_end(index):
            return "RUNNING"
        # In a failing job the last server fails; the others still succeed.
        return "FAILED" if self.fails and index == len(self.server_ids) - 1 else "SUCCESS"

    def status_v1(self, now: float) -> int:
        if now < self.created + self.duration / 3:
            return 3
        if now < self.created + self.duration:
            return 2
        return 0 if self.fails else 1

    @property
    def end(self) -> float:
        return self.created + self.duration


WORKSPACE_SERVICE = "hws.service.type.vdi"


CONTRACT_DISCOUNT = 1  # ListOrderDiscounts' discount_type
PRICE_ADJUSTMENT = 609  # must be used when present


@dataclass
class Discount:
    """A discount an order can be paid with: what it takes off each of the order's lines."""

    id: str
    type: int
    off: list[Decimal]  # per line of the order, in order
    value: str | None = None

    @property
    def amount_off(self) -> Decimal:
        return sum(self.off, Decimal(0))


@dataclass
class Order:
    id: str
    created: float
    amount: Decimal  # the list price (official_amount)
    spec: dict[str, Any]
    deadline: float
    paid_at: float | None = None
    cancelled_at: float | None = None
    server_ids: list[str] = field(default_factory=list)
    service_type_code: str = WORKSPACE_SERVICE
    job_id: str | None = None  # when the create answered with a job too
    lines: list[Decimal] = field(default_factory=list)  # the list price of each line
    discounts: list[Discount] = field(default_factory=list)
    charged: Decimal | None = None  # what the payment charged
    charged_discount: str | None = None  # the discount id it used
    proxy_at: float | None = None  # a proxy payment waits for the master account
    proxy_charge: Decimal | None = None  # what the master account will be charged
    refunded: int = 0  # servers that failed to open, unsubscribed by billing

    @property
    def amount_due(self) -> Decimal:
        """What billing states the order comes to: the list price until paid, then what was charged."""
        return self.charged if self.charged is not None else self.amount

    def status(self, now: float, processing_seconds: float) -> int:
        if self.cancelled_at is not None or (self.paid_at is None and now > self.deadline):
            return 4
        if self.paid_at is None:
            return 6
        return 3 if now < self.paid_at + processing_seconds else 5


class QuotaExceeded(Exception):
    def __init__(self, need: int, remainder: int) -> None:
        self.need = need
        self.remainder = remainder
        super().__init__(f"Insufficient quota: instances need {need}, remainder {remainder}.")


class CloudState:
    def __init__(self, config: SandboxConfig, clock: Any = time.time) -> None:
        self.config = config
        self.clock = clock
        # Ids come from the operating system's randomness, never from a fixed seed: a bot whose database outlives
        # a sandbox restart or reset must never see a job or order id again (it would link it to the old request).
        self._ids = random.SystemRandom()
        self._issued: set[str] = set()
        self.groups: dict[str, dict[str, Any]] = {g["id"]: g for g in seed.server_groups(config.extra_server_groups)}
        self.products = {p["product_id"]: p for p in seed.PRODUCTS}
        self.subnets = {s["id"]: s for s in seed.SUBNETS}
        self.servers: dict[str, Server] = {}
        self.jobs: dict[str, Job] = {}
        self.orders: dict[str, Order] = {}
        self.balance = Decimal(str(config.balance))
        self.fail_next_jobs = 0
        self.open_fewer_next = 0  # the next paid order opens this many servers fewer than it ordered
        # How the account is set up (changed by the control endpoint; a reset restores the configuration's).
        self.finance_hosted = config.finance_hosted
        self.can_view_discounts = config.can_view_discounts
        self.tokens: dict[str, float] = {}  # token -> expiry
        # Combined transactions: the parent order's id -> its orders' ids; their parents, by order id.
        self.sub_orders: dict[str, list[str]] = {}
        self.parent_order: dict[str, str] = {}
        # Line items billing lists before an order's own (others bought in the same order): order id -> lines.
        self.extra_lines: dict[str, list[dict[str, Any]]] = {}
        self.account_tokens: set[str] = set()  # the tokens scoped to the account (domain), not to a project
        self.discount_rate = Decimal(str(config.discount_rate))
        self.discount_name = config.discount_name

    # Ids ---------------------------------------------------------------------------------------

    def _new_id(self, draw: Callable[[], str]) -> str:
        """A fresh id, never one this sandbox gave before (and, drawn from the OS, none another run gave)."""
        while (candidate := draw()) in self._issued:
            pass
        self._issued.add(candidate)
        return candidate

    def _job_id(self) -> str:
        return self._new_id(lambda: str(self._ids.randrange(10**17, 10**18)))

    def _order_id(self, at: float) -> str:
        """BSS's shape: CS, the minute it was placed, five letters or digits."""
        minute = "CS" + datetime.fromtimestamp(at, UTC).strftime("%y%m%d%H%M")
        return self._new_id(lambda: minute + "".join(self._ids.choice(string.ascii_uppercase + string.digits)
                                                      for _ in range(5)))

    # Quota -------------------------------------------------------------------------------------

    def instances_in_use(self) -> int:
        return len(self.servers) + sum(
            int(o.spec.get("subscription_num", 0)) for o in self.orders.values()
            if not o.server_ids and o.service_type_code == WORKSPACE_SERVICE
            and o.status(self.clock(), self.config.order_seconds) in (3, 6)
        )

    def quota(self, need: int) -> dict[str, Any]:
        remainder = max(self.config.instance_quota - self.instances_in_use(), 0)
        return {"is_enough": need <= remainder,
                "quota_remainder": [{"type": "INSTANCES", "remainder": remainder, "need": need}]}

    # Creating ----------------------------------------------------------------------------------

    def _new_server(self, spec: dict[str, Any], index: int, now: float, charging: str) -> Server:
        group = self.groups[spec["server_group_id"]]
        server = Server(
            id=self._new_id(lambda: str(uuid.UUID(int=self._ids.getrandbits(128), version=4))),
            name=f"{group['name'][:40]}-{len(self.servers) + index + 1:04d}",
            group_id=group["id"], product_id=spec["product_id"],
            availability_zone=spec.get("availability_zone") or "cn-north-4a",
            create_time=now, charging_mode=charging,
        )
        return server

    def _check_quota(self, spec: dict[str, Any]) -> int:
        count = int(spec["subscription_num"])
        need = self.quota(count)
        if not need["is_enough"]:
            raise QuotaExceeded(count, need["quota_remainder"][0]["remainder"])
        return count

    def create_job(self, spec: dict[str, Any]) -> Job:
        now = self.clock()
        count = self._check_quota(spec)
        job_id = self._job_id()
        fails = self.fail_next_jobs > 0
        self.fail_next_jobs = max(self.fail_next_jobs - 1, 0)
        servers = [self._new_server(spec, i, now, "postPaid") for i in range(count)]
        for server in servers:
            server.job_id = job_id
            self.servers[server.id] = server
        job = Job(job_id, now, self.config.job_seconds, [s.id for s in servers], fails,
                  [self._job_id() for _ in servers])
        self.jobs[job_id] = job
        return job

    def create_order(self, spec: dict[str, Any]) -> Order:
        now = self.clock()
        self._check_quota(spec)
        extend = spec.get("create_server_extend_param", {})
        lines = prices.order_lines(self.products, spec)  # the servers and their system disks
        amount = sum(lines, Decimal(0))
        order_id = self._order_id(now)
        order = Order(order_id, now, amount, spec, now + self.config.payment_window_seconds, lines=lines)
        if self.discount_rate > 0:  # the account's contract discount, per line as the price inquiry takes it
            order.discounts.append(Discount("sandbox-contract-discount", CONTRACT_DISCOUNT,
                                            [line - prices.after_discount(line, self.discount_rate) for line in lines],
                                            value=str(self.discount_rate)))
        self.orders[order_id] = order
        if self.config.order_answers_with_job:
            # The job waits (initializing) until the order is paid; paying starts it.
            order.job_id = self._job_id()
            self.jobs[order.job_id] = Job(order.job_id, order.deadline, self.config.job_seconds, [], False)
        if extend.get("is_auto_pay"):
            # Auto-pay: billing applies the commercial (here: the contract) discount itself.
            best = max(order.discounts, key=lambda d: d.amount_off, default=None)
            charge = amount - (best.amount_off if best else Decimal(0))
            if self.balance >= charge:
                order.charged, order.charged_discount = charge, best.id if best else None
                self._settle(order, now)
        if self.config.order_lines_before:
            self.extra_lines[order.id] = filler_lines(order.id, self.config.order_lines_before)
        if self.config.combined_orders:
            self.combine(order, "hws.service.type.ebs")
        return order

    def combine(self, order: Order, other_service: str) -> Order:
        """Bill `order` as part of a combined transaction with another service's order; returns the parent."""
        other = self.place_foreign_order(service_type_code=other_service, spec={}, at=order.created,
                                         amount=(order.amount / 2).quantize(Decimal("0.01")))
        parent = self.place_foreign_order(service_type_code=order.service_type_code, spec={}, at=order.created,
                                          amount=order.amount + other.amount)
        self.sub_orders[parent.id] = [order.id, other.id]
        self.parent_order.update({order.id: parent.id, other.id: parent.id})
        return parent

    def line_items(self, order: Order, own: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """All of an order's line items: none on a combined transaction (its orders have them)."""
        if order.id in self.sub_orders:
            return []
        return self.extra_lines.get(order.id, []) + own

    def place_foreign_order(self, *, service_type_code: str, spec: dict[str, Any], at: float, amount: Decimal) -> Order:
        """An order someone else placed in the same account (another person, or another service)."""
        order_id = self._order_id(at)
        order = Order(order_id, at, amount, spec, at + self.config.payment_window_seconds,
                      service_type_code=service_type_code, lines=[amount])
        self.orders[order_id] = order
        return order

    def _settle(self, order: Order, now: float) -> None:
        order.charged = order.amount_due
        self.balance -= order.charged
        order.paid_at = now
        if order.service_type_code != WORKSPACE_SERVICE or order.spec.get("server_group_id") not in self.groups:
            return  # another service's order: nothing of ours to build
        ordered = int(order.spec["subscription_num"])
        # Servers that fail to open are unsubscribed (refunded) by billing; the order still completes.
        order.refunded = min(self.open_fewer_next, ordered)
        self.open_fewer_next = 0
        servers = [self._new_server(order.spec, i, now, "prePaid") for i in range(ordered - order.refunded)]
        for server in servers:
            server.order_id = order.id
            server.job_id = order.job_id
            self.servers[server.id] = server
        order.server_ids = [s.id for s in servers]
        job = self.jobs.get(order.job_id or "")
        if job is not None:
            job.created = now
            job.server_ids = list(order.server_ids)
            job.sub_job_ids = [self._job_id() for _ in servers]

    def pay(self, order: Order, discount: Discount | None = None) -> str | None:
        """Pay an order with at most one of its discounts; returns a CBC error code when it cannot be paid. For a
        finance-hosted member, paying only makes a proxy payment order for the master account."""
        now = self.clock()
        if order.status(now, self.config.order_seconds) != 6:
            return "CBC.99003106"
        charge = order.amount - (discount.amount_off if discount else Decimal(0))
        if self.finance_hosted:
            order.proxy_at = now
            order.charged_discount = discount.id if discount else None
            order.proxy_charge = charge
            return None
        if self.balance < charge:
            return "CBC.99005003"
        order.charged, order.charged_discount = charge, discount.id if discount else None
        self._settle(order, now)
        return None

    def master_pays(self, order: Order) -> bool:
        """The master account pays a member's proxy payment order (in its Billing Center)."""
        if order.proxy_at is None or order.paid_at is not None:
            return False
        order.charged = order.proxy_charge if order.proxy_charge is not None else order.amount
        self._settle(order, self.clock())
        return True

    # Time passing ------------------------------------------------------------------------------

    def advance(self) -> None:
        """Bring servers up to date with their jobs and orders."""
        now = self.clock()
        for job in self.jobs.values():
            for index, server_id in enumerate(job.server_ids):
                server = self.servers.get(server_id)
                if server is None:
                    continue
                status = job.sub_status(index, now)
                if status == "SUCCESS":
                    server.status, server.vm_status = "REGISTERED", "ACTIVE"
                elif status == "FAILED":
                    # A failed creation is rolled back and refunded.
                    del self.servers[server_id]
        for order in self.orders.values():
            if order.status(now, self.config.order_seconds) == 5:
                for server_id in order.server_ids:
                    if server_id in self.servers:
                        self.servers[server_id].status = "REGISTERED"
                        self.servers[server_id].vm_status = "ACTIVE"

    # Views -------------------------------------------------------------------------------------

    def job_v1(self, job: Job) -> dict[str, Any]:
        now = self.clock()
        status = job.status_v1(now)
        subs = []
        for index, server_id in enumerate(job.server_ids):
            sub = job.sub_status(index, now)
            code = {"WAITING": 3, "RUNNING": 2, "SUCCESS": 1, "FAILED": 0}[sub]
            subs.append({
                "job_id": job.sub_job_ids[index], "job_type": 2, "job_status": code,
                "begin_time": iso(job.created), "end_time": iso(job.sub_job_end(index)) if code < 2 else None,
                "execute_code": _failure_code() if sub == "FAILED" else None,
                "execute_message": _failure_message() if sub == "FAILED" else None,
                "entities": [{"resource_id": server_id, "resource_name": f"server-{index + 1}",
                              "cloud_service_type": "hws.service.type.vdi", "is_main_resource": 1}],
            })
        return {"job": {
            "job_id": job.id, "job_type": 1, "job_status": status, "begin_time": iso(job.created),
            "end_time": iso(job.end) if status in (0, 1) else None, "expected_end_time": iso(job.end),
            "execute_code": _failure_code() if status == 0 else None,
            "execute_message": _failure_message() if status == 0 else None, "sub_jobs": subs,
        }}

    def sub_jobs_v2(self, job: Job) -> list[dict[str, Any]]:
        now = self.clock()
        items = []
        for index, server_id in enumerate(job.server_ids):
            sub = job.status_overrides.get(index, job.sub_status(index, now))
            items.append({
                "id": job.sub_job_ids[index], "job_type": "CREATE_SERVER",
                "job_resource_info": {"resource_id": server_id, "resource_name": f"server-{index + 1}"},
                "begin_time": iso(job.created),
                "end_time": iso(job.sub_job_end(index)) if sub in ("SUCCESS", "FAILED") else None,
                "status": sub, "error_code": _failure_code() if sub == "FAILED" else None,
                "error_message": _failure_message() if sub == "FAILED" else None,
                "project_id": self.config.project_id, "job_id": job.id,
            })
        return items

    def job_v2(self, job: Job) -> dict[str, Any]:
        now = self.clock()
        status = {3: "WAITING", 2: "RUNNING", 1: "SUCCESS", 0: "FAILED"}[job.status_v1(now)]
        return {"id": job.id, "job_type": "CREATE_SERVER", "begin_time": iso(job.created),
                "end_time": iso(job.end) if status in ("SUCCESS", "FAILED") else None, "status": status,
                "sub_jobs_total": len(job.server_ids), "sub_jobs": self.sub_jobs_v2(job)}

    def order_details(self, order: Order) -> dict[str, Any]:
        now = self.clock()
        extend = order.spec.get("create_server_extend_param", {})
        return {
            "total_count": 1,
            "order_info": {
                "order_id": order.id, "customer_id": self.config.domain_id, "service_type_code": order.service_type_code,
                "service_type_name": "Workspace" if order.service_type_code == WORKSPACE_SERVICE else "Other",
                "source_type": 1,
                "status": order.status(now, self.config.order_seconds), "order_type": 1,
                "amount_after_discount": float(order.amount_due), "official_amount": float(order.amount),
                "measure_id": 1, "create_time": iso(order.created),
                "payment_time": iso(order.paid_at) if order.paid_at else None, "currency": "CNY",
                "pending_payment_end_time": iso(order.deadline),
            },
            "order_line_items": [{
                "order_line_item_id": order.id + "-000001", "service_type_code": order.service_type_code,
                "product_id": order.spec.get("product_id"), "period_type": extend.get("period_type"),
                "period_num": extend.get("period_num"), "subscription_num": order.spec.get("subscription_num"),
                "amount_after_discount": float(order.amount_due), "official_amount": float(order.amount),
                "currency": "CNY", "order_id": order.id,
            }],
        }

    def order_discounts(self, order: Order) -> list[dict[str, Any]]:
        """ListOrderDiscounts' `discounts` for a pending order: each with what it takes off each line."""
        if order.status(self.clock(), self.config.order_seconds) != 6:
            return []
        return [{"discount_id": d.id, "discount_value": d.value, "discount_type": d.type, "orders": [{
            "order_id": order.id,
            "order_line_items": [{"order_line_item_ids": [f"{order.id}-{index + 1:06d}"], "discount_mode": 2,
                                  "discount_amount": float(off), "discount_ratio": None}
                                 for index, off in enumerate(d.off) if off > 0],
        }]} for d in order.discounts]


def filler_lines(order_id: str, count: int) -> list[dict[str, Any]]:
    """Line items of other products in the same order (data disks of another service)."""
    return [{"order_line_item_id": f"{order_id}-{900000 + i:06d}", "service_type_code": "hws.service.type.ebs",
             "product_id": "OFFI000000000000001", "period_type": 2, "period_num": 1, "subscription_num": 1,
             "amount_after_discount": 10.0, "official_amount": 10.0, "currency": "CNY", "order_id": order_id}
            for i in range(count)]


def _failure_code() -> str:
    return "WKS.00211401"


def _failure_message() -> str:
    return "Creating the server failed: the availability zone has no capacity for this flavor (sandbox)."
