"""The sandbox cloud as an ASGI app: WorkspaceApp, the VPC subnet lookup, BSS, IAM and STS on one host.

Same paths and JSON shapes as the real services. Requests must carry a valid AK/SK signature or IAM
token (401 `APIGW.0301` otherwise); an AK/SK-signed call to a global service (BSS) must also carry the
account's id as a signed `X-Domain-Id`, as the real gateway demands, and a token sent to it must be scoped
to the account (a project-scoped one is refused with 403 `CBC.0151`). STS answers who signed a call.
Control endpoints under `/_sandbox/` read the call log, inject faults and reset the state; they need
no credentials and exist only here.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.cloud.signer import DATE_FORMAT, parse_authorization, sign_parts
from bot.sandbox.faults import FaultInjector, FaultSettings, ScriptedFault
from bot.sandbox.rating import SandboxRating
from bot.sandbox.seed import AVAILABILITY_ZONES, VOLUME_TYPES
from bot.sandbox.state import (
    PRICE_ADJUSTMENT,
    CloudState,
    Discount,
    Order,
    QuotaExceeded,
    SandboxConfig,
    filler_lines,
    iso,
)
from bot.spec import SpecError, parse_spec

MAX_CLOCK_SKEW = timedelta(minutes=15)
# Paths of BSS, a global service: with AK/SK the gateway needs X-Domain-Id on every one of them.
GLOBAL_SERVICE_PREFIXES = ("/v2/orders", "/v3/orders", "/v2/bills", "/v2/products", "/v2/accounts")
Handler = Callable[["Call"], Awaitable[Response]]


@dataclass
class Call:
    request: Request
    params: dict[str, str]
    query: dict[str, str]
    body: Any


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error_code": code, "error_msg": message, "request_id": secrets.token_hex(16)},
        status_code=status, headers={"X-Request-Id": secrets.token_hex(16)},
    )


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    all_headers = {"X-Request-Id": secrets.token_hex(16), **(headers or {})}
    return JSONResponse(body, status_code=status, headers=all_headers)


class Sandbox:
    """State, faults and the call log, plus the ASGI app that serves them."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.state = CloudState(self.config)
        self.faults = FaultInjector()
        self.log: list[dict[str, Any]] = []
        self._routes: list[tuple[str, re.Pattern[str], str, Handler, bool]] = []
        self.rating = SandboxRating(self)
        self._register_routes()
        self.app = Starlette(routes=[
            Route("/_sandbox/log", self._control_log, methods=["GET", "DELETE"]),
            Route("/_sandbox/faults", self._control_faults, methods=["POST", "DELETE"]),
            Route("/_sandbox/reset", self._control_reset, methods=["POST"]),
            Route("/_sandbox/tokens", self._control_tokens, methods=["DELETE"]),
            Route("/_sandbox/jobs/fail-next", self._control_fail_next, methods=["POST"]),
            Route("/_sandbox/jobs/bulk", self._control_bulk_jobs, methods=["POST"]),
            Route("/_sandbox/balance", self._control_balance, methods=["POST"]),
            Route("/_sandbox/orders/foreign", self._control_foreign_order, methods=["POST"]),
            Route("/_sandbox/orders/discounts", self._control_order_discount, methods=["POST"]),
            Route("/_sandbox/orders/master-pay", self._control_master_pay, methods=["POST"]),
            Route("/_sandbox/orders/open-fewer", self._control_open_fewer, methods=["POST"]),
            Route("/_sandbox/account", self._control_account, methods=["POST"]),
            Route("/_sandbox/discount", self.rating.control_discount, methods=["POST", "DELETE"]),
            Route("/{path:path}", self._dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])

    # Public helpers for in-process tests ------------------------------------------------------

    def calls(self, operation: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.log if operation is None or e["operation"] == operation]

    def reset(self) -> None:
        self.state = CloudState(self.config)
        self.faults = FaultInjector()
        self.log.clear()

    # Routing -----------------------------------------------------------------------------------

    def _route(self, method: str, pattern: str, operation: str, handler: Handler, auth: bool = True) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, regex, operation, handler, auth))

    def _register_routes(self) -> None:
        p = "/v1/{project_id}"
        r = self._route
        r("POST", "/v3/auth/tokens", "CreateToken", self._create_token, auth=False)
        r("GET", "/v3/projects", "KeystoneListProjects", self._list_projects)
        r("GET", "/v3/auth/domains", "KeystoneListAuthDomains", self._list_auth_domains)
        r("GET", "/v5/caller-identity", "GetCallerIdentity", self._caller_identity)
        r("GET", p + "/app-server-groups", "ListServerGroups", self._list_groups)
        r("GET", p + "/app-server-groups/{group_id}", "ShowServerGroup", self._show_group)
        r("GET", p + "/product", "ListProduct", self._list_products)
        r("GET", p + "/availability-zone", "ListAvailabilityZone", self._list_azs)
        r("GET", p + "/availability-zone/summary", "ListAz", self._az_summary)
        r("GET", p + "/volume-type", "ListVolumeType", self._volume_types)
        r("GET", p + "/check/quota", "CheckQuota", self._check_quota)
        r("POST", p + "/app-servers/actions/create", "CreateAppServers", self._create_servers)
        r("GET", p + "/app-servers", "ListServers", self._list_servers)
        r("GET", p + "/job/{job_id}", "ShowJob", self._show_job)
        r("GET", "/v2/{project_id}/job/{job_id}", "ShowJobDetail", self._show_job_detail)
        r("GET", p + "/app-server-sub-jobs", "ListSubJobs", self._list_sub_jobs)
        r("GET", p + "/subnets/{subnet_id}", "ShowSubnet", self._show_subnet)
        r("GET", "/v2/orders/customer-orders/details/{order_id}", "ShowCustomerOrderDetails", self._show_order)
        r("GET", "/v2/orders/customer-orders", "ListCustomerOrders", self._list_orders)
        r("GET", "/v2/orders/customer-orders/order-discounts", "ListOrderDiscounts", self._order_discounts)
        r("POST", "/v3/orders/customer-orders/pay", "PayOrders", self._pay_order)
        r("PUT", "/v2/orders/customer-orders/cancel", "CancelCustomerOrder", self._cancel_order)
        r("POST", "/v2/orders/suscriptions/resources/query", "ListPayPerUseCustomerResources",
          self._order_resources)
        self.rating.register(r)

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        for method, regex, operation, handler, needs_auth in self._routes:
            match = regex.match(path)
            if match and method == request.method:
                return await self._serve(request, operation, handler, match.groupdict(), needs_auth)
        self._record(request, "Unknown", 404, None, None)
        return error(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")

    async def _serve(
        self, request: Request, operation: str, handler: Handler, params: dict[str, str], needs_auth: bool
    ) -> Response:
        raw_body = await request.body()
        body: Any = None
        if raw_body:
            try:
                body = await request.json()
            except ValueError:
                self._record(request, operation, 400, None, None)
                return error(400, "APIGW.0201", "The request body is not valid JSON.")
        if needs_auth:
            refusal = self._authenticate(request, raw_body, params.get("project_id"))
            if refusal is not None:
                self._record(request, operation, refusal.status_code, None, body)
                return refusal
        fault = self.faults.pick(operation)
        if fault in ("429", "500", "503"):
            self._record(request, operation, int(fault), fault, body)
            if fault == "429":
                return error(429, "APIGW.0308",
                             "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second")
            return error(int(fault), "WKS.00211401" if fault == "500" else "WKS.00050902",
                         "The requested operation failed. Please try again later." if fault == "500"
                         else "The service is now unavailable to process the request.")
        if fault == "404":
            self._record(request, operation, 404, fault, body)
            return error(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
        if fault == "403":
            self._record(request, operation, 403, fault, body)
            return _forbidden(request.url.path)
        if fault == "slow":
            await asyncio.sleep(self.faults.settings.slow_seconds)
        response = await handler(Call(request, params, dict(parse_qsl(request.url.query)), body))
        if fault == "500-after":
            response = error(500, "WKS.00211401", "The requested operation failed. Please try again later.")
        self._record(request, operation, response.status_code, fault, body)
        if fault == "hang":
            await asyncio.sleep(self.faults.settings.hang_seconds)
        return response

    def _record(self, request: Request, operation: str, status: int, fault: str | None, body: Any) -> None:
        if operation == "CreateToken" and isinstance(body, dict):
            scope = body.get("auth", {}).get("scope") if isinstance(body.get("auth"), dict) else None
            body = {"auth": "(password not recorded)", "scope": scope}
        self.log.append({
            "seq": len(self.log) + 1, "time": time.time(), "method": request.method, "path": request.url.path,
            "query": dict(parse_qsl(request.url.query)), "operation": operation, "status": status,
            "fault": fault, "body": body, "domain_id": request.headers.get("x-domain-id"),
            "auth": "token" if "x-auth-token" in request.headers else
                    "aksk" if "authorization" in request.headers else "none",
        })

    # Authentication ----------------------------------------------------------------------------

    def _authenticate(self, request: Request, raw_body: bytes, path_project: str | None) -> Response | None:
        cfg = self.config
        token = request.headers.get("x-auth-token")
        if token is not None:
            expiry = self.state.tokens.get(token)
            if expiry is None or expiry < time.time():
                return error(401, "APIGW.0301", "Incorrect IAM authentication information: the token is invalid or expired.")
            refusal = self._check_token_scope(token, request.url.path, path_project)
            if refusal is not None:
                return refusal
        else:
            refusal = self._verify_signature(request, raw_body)
            if refusal is not None:
                return refusal
            header_project = request.headers.get("x-project-id")
            if path_project and header_project != path_project:
                return error(401, "APIGW.0301", "Incorrect IAM authentication information: X-Project-Id does not match.")
            if is_global_service(request.url.path):
                refusal = self._check_account(request)
                if refusal is not None:
                    return refusal
        if path_project is not None and path_project != cfg.project_id:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: unknown project id.")
        return None

    def _verify_signature(self, request: Request, raw_body: bytes) -> Response | None:
        cfg = self.config
        fields = parse_authorization(request.headers.get("authorization", ""))
        if fields is None:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: no signature or token.")
        if fields["Access"] != cfg.access_key:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: unknown access key.")
        if cfg.security_token and request.headers.get("x-security-token") != cfg.security_token:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: security token invalid.")
        try:
            signed_at = datetime.strptime(request.headers.get("x-sdk-date", ""), DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return error(401, "APIGW.0303", "Incorrect app authentication information: X-Sdk-Date is missing.")
        if abs(datetime.now(UTC) - signed_at) > MAX_CLOCK_SKEW:
            return error(401, "APIGW.0303", "Incorrect app authentication information: the request time is off.")
        names = [n for n in fields["SignedHeaders"].split(";") if n]
        if "host" not in names or "x-sdk-date" not in names:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: host and date must be signed.")
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode()
        parts = sign_parts(
            method=request.method, path=raw_path, query=parse_qsl(request.url.query, keep_blank_values=True),
            headers={n: request.headers.get(n, "") for n in names}, body=raw_body,
            secret_key=cfg.secret_key, signed_header_names=names,
        )
        if not secrets.compare_digest(parts.signature, fields["Signature"]):
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail.")
        return None

    def _check_token_scope(self, token: str, path: str, path_project: str | None) -> Response | None:
        """A global service (BSS) takes only a token scoped to the account; a project's API only a project's."""
        account_scoped = token in self.state.account_tokens
        if is_global_service(path) and not account_scoped:
            # The token is valid, but a project-scoped one carries no rights on a global service.
            return error(403, "CBC.0151", "Access denied. The token is not scoped to the account (domain).")
        if path_project is not None and account_scoped:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: the token is not scoped "
                                            "to this project.")
        return None

    def _check_account(self, request: Request) -> Response | None:
        """AK/SK on a global service: the account must be named by a signed X-Domain-Id (the signature is valid)."""
        fields = parse_authorization(request.headers.get("authorization", "")) or {}
        signed = fields.get("SignedHeaders", "").split(";")
        domain_id = request.headers.get("x-domain-id")
        if domain_id is None or "x-domain-id" not in signed:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: a global service called with "
                                            "AK/SK needs the account id in a signed X-Domain-Id header.")
        if domain_id != self.config.domain_id:
            return error(401, "APIGW.0301", "Incorrect IAM authentication information: X-Domain-Id is not the "
                                            "account of this access key.")
        return None

    # IAM ---------------------------------------------------------------------------------------

    async def _create_token(self, call: Call) -> Response:
        cfg = self.config
        try:
            identity = call.body["auth"]["identity"]
            user = identity["password"]["user"]
            scopes = call.body["auth"]["scope"]
            scope, account_scope = scopes.get("project"), scopes.get("domain")
            if (scope is None) == (account_scope is None):
                raise KeyError("scope")  # exactly one of a project or the account (domain)
        except (KeyError, TypeError, AttributeError):
            return JSONResponse({"error": {"code": 400, "message": "The request body is invalid.",
                                           "title": "Bad Request"}}, status_code=400)
        if (user.get("name"), user.get("password"), (user.get("domain") or {}).get("name")) != (
            cfg.iam_user, cfg.iam_password, cfg.iam_domain
        ):
            return JSONResponse({"error": {"code": 401, "message": "The username or password is wrong.",
                                           "title": "Unauthorized"}}, status_code=401)
        account = {"id": cfg.domain_id, "name": cfg.iam_domain}
        if account_scope is not None:
            if account_scope.get("id", cfg.domain_id) != cfg.domain_id or account_scope.get("name", cfg.iam_domain) \
                    != cfg.iam_domain:
                return JSONResponse({"error": {"code": 401, "message": "The account does not exist.",
                                               "title": "Unauthorized"}}, status_code=401)
            scoped: dict[str, Any] = {"domain": account}
        elif scope.get("id", cfg.project_id) != cfg.project_id or scope.get("name", cfg.region) != cfg.region:
            return JSONResponse({"error": {"code": 401, "message": "The project does not exist.",
                                           "title": "Unauthorized"}}, status_code=401)
        else:
            scoped = {"project": {"id": cfg.project_id, "name": cfg.region, "domain": account}}
        token = "MIIsandbox" + secrets.token_urlsafe(48)
        now = time.time()
        self.state.tokens[token] = now + cfg.token_ttl_seconds
        if account_scope is not None:
            self.state.account_tokens.add(token)
        body = {"token": {
            "expires_at": iso(now + cfg.token_ttl_seconds), "issued_at": iso(now), "methods": ["password"],
            **scoped, "user": {"name": cfg.iam_user, "domain": account},
        }}
        return ok(body, 201, {"X-Subject-Token": token})

    async def _list_projects(self, call: Call) -> Response:
        cfg = self.config
        projects = [{"id": cfg.project_id, "name": cfg.region, "domain_id": cfg.domain_id, "enabled": True}]
        if cfg.duplicate_project_names:
            projects.append({"id": "f" * 32, "name": cfg.region, "domain_id": cfg.domain_id, "enabled": True})
        name = call.query.get("name")
        return ok({"projects": [p for p in projects if name is None or p["name"] == name]})

    async def _list_auth_domains(self, call: Call) -> Response:
        """KeystoneListAuthDomains: the accounts the caller may use (the SDK takes the first one's id)."""
        cfg = self.config
        base = str(call.request.base_url).rstrip("/")
        domains = [] if cfg.list_no_domains else [{
            "id": cfg.domain_id, "name": cfg.iam_domain, "enabled": True, "description": "",
            "links": {"self": f"{base}/v3/domains/{cfg.domain_id}"},
        }]
        return ok({"domains": domains, "links": {"self": f"{base}/v3/auth/domains", "previous": None, "next": None}})

    async def _caller_identity(self, call: Call) -> Response:
        """STS GetCallerIdentity (v5): who signed the call; the SDK reads `account_id` when IAM lists no domain."""
        cfg = self.config
        return ok({"account_id": cfg.domain_id, "principal_id": cfg.domain_id[:8] + "a1b2c3d4e5f6a7b8c9d0e1f2",
                   "principal_type": "User", "principal_urn": f"iam::{cfg.domain_id}:user:{cfg.iam_user}"})

    # WorkspaceApp catalogue --------------------------------------------------------------------

    def _with_counts(self, group: dict[str, Any]) -> dict[str, Any]:
        count = sum(1 for s in self.state.servers.values() if s.group_id == group["id"])
        return {**group, "app_server_count": count}

    async def _list_groups(self, call: Call) -> Response:
        self.state.advance()  # servers follow their jobs and orders
        offset, limit = _page(call.query, default_limit=10)
        if limit is None:
            return error(400, "WKS.00169901", "The request message is invalid: limit must be 1 to 100.")
        groups = list(self.state.groups.values())
        if name := call.query.get("server_group_name"):
            groups = [g for g in groups if name.lower() in g["name"].lower()]
        if group_id := call.query.get("server_group_id"):
            groups = [g for g in groups if g["id"] == group_id]
        return ok({"count": len(groups), "items": [self._with_counts(g) for g in groups[offset:offset + limit]]})

    async def _show_group(self, call: Call) -> Response:
        group = self.state.groups.get(call.params["group_id"])
        if group is None:
            return error(404, "WKS.00169901", "The server group does not exist.")
        flavors = [{"id": group["product_info"]["flavor_id"], "links": []}]
        return ok({**self._with_counts(group), "flavors": flavors, "image_type": "private",
                   "image_min_disk": 60, "project_name": self.config.region})

    async def _list_products(self, call: Call) -> Response:
        products = [{k: v for k, v in p.items() if not k.endswith("_price")} for p in self.state.products.values()]
        if product_id := call.query.get("product_id"):
            products = [p for p in products if p["product_id"] == product_id]
        if flavor_id := call.query.get("flavor_id"):
            products = [p for p in products if p["flavor_id"] == flavor_id]
        az = call.query.get("availability_zone")
        if az:
            sold_out = {z["availability_zone"]: z["sold_out"]["products"] for z in AVAILABILITY_ZONES}
            products = [{**p, "status": "sellout" if p["product_id"] in sold_out.get(az, []) else p["status"]}
                        for p in products]
        if mode := call.query.get("charge_mode"):
            products = [{**p, "charge_mode": mode} for p in products]
        return ok({"availability_zone": az, "os_type": "Windows", "products": products})

    async def _list_azs(self, call: Call) -> Response:
        zones = AVAILABILITY_ZONES
        return ok({"availability_zones": zones, "total_count": len(zones)})

    async def _az_summary(self, call: Call) -> Response:
        return ok({"azs": {"CENTER": AVAILABILITY_ZONES}, "default_type": "CENTER", "support_type": ["CENTER"]})

    async def _volume_types(self, call: Call) -> Response:
        return ok({"volume_types": VOLUME_TYPES})

    async def _check_quota(self, call: Call) -> Response:
        self.state.advance()  # servers follow their jobs and orders
        q = call.query
        missing = [k for k in ("product_id", "subscription_num", "disk_size", "disk_num") if not q.get(k)]
        if missing:
            return error(400, "WKS.00169901", f"The request message is invalid: {', '.join(missing)} is required.")
        try:
            need = int(q["subscription_num"])
            disk_size, disk_num = int(q["disk_size"]), int(q["disk_num"])
        except ValueError:
            return error(400, "WKS.00169901", "The request message is invalid: numbers expected.")
        if not (1 <= need <= 100 and 10 <= disk_size <= 328704 and 1 <= disk_num <= 11):
            return error(400, "WKS.00169901", "The request message is invalid: a value is out of range.")
        if q["product_id"] not in self.state.products:
            return error(400, "WKS.00169901", "The product does not exist.")
        return ok(self.state.quota(need))

    # Creating and jobs -------------------------------------------------------------------------

    async def _create_servers(self, call: Call) -> Response:
        self.state.advance()  # servers follow their jobs and orders
        if not isinstance(call.body, dict):
            return error(400, "WKS.0001", "The request message is empty.")
        try:
            spec = parse_spec(call.body)
        except SpecError as invalid:
            field, message = next(iter(invalid.errors.items()))
            return error(400, "WKS.00211102", f"The parameter is invalid: {field}: {message}")
        group = self.state.groups.get(spec.server_group_id)
        if group is None:
            return error(400, "WKS.00169901", "The server group does not exist.")
        if spec.product_id not in self.state.products:
            return error(400, "WKS.00169901", "The product does not exist.")
        if spec.flavor_id and spec.flavor_id != self.state.products[spec.product_id]["flavor_id"]:
            # The sandbox's own rule (UNCONFIRMED for the real API): one product at another's flavor is refused.
            return error(400, "WKS.00169901", "The flavor does not belong to the product.")
        subnet = self.state.subnets.get(spec.subnet_id)
        if subnet is None or subnet["vpc_id"] != spec.vpc_id:
            return error(400, "WKS.00169901", "The subnet does not exist in the given VPC.")
        if spec.availability_zone and spec.availability_zone in {
            z["availability_zone"] for z in AVAILABILITY_ZONES if spec.product_id in z["sold_out"]["products"]
        }:
            return error(400, "WKS.00169901", "The product is sold out in this availability zone.")
        body = spec.to_api_body()
        try:
            if spec.is_prepaid:
                order = self.state.create_order(body)
                return ok({"order_id": order.id, **({"job_id": order.job_id} if order.job_id else {})})
            return ok({"job_id": self.state.create_job(body).id})
        except QuotaExceeded as exceeded:
            return error(400, "WKS.00211102", f"The parameter is invalid: {exceeded}")

    async def _list_servers(self, call: Call) -> Response:
        self.state.advance()  # servers follow their jobs and orders
        offset, limit = _page(call.query, default_limit=10)
        if limit is None:
            return error(400, "WKS.00169901", "The request message is invalid: limit must be 1 to 100.")
        servers = sorted(self.state.servers.values(), key=lambda s: (s.create_time, s.id))
        if group_id := call.query.get("server_group_id"):
            servers = [s for s in servers if s.group_id == group_id]
        if server_id := call.query.get("server_id"):
            servers = [s for s in servers if s.id == server_id]
        names = {g: self.state.groups[g]["name"] for g in self.state.groups}
        return ok({"count": len(servers), "items": [s.as_api(names[s.group_id]) for s in servers[offset:offset + limit]]})

    async def _show_job(self, call: Call) -> Response:
        job = self.state.jobs.get(call.params["job_id"])
        if job is None:
            return error(404, "WKS.00149901", "The job does not exist.")
        return ok(self.state.job_v1(job))

    async def _show_job_detail(self, call: Call) -> Response:
        job = self.state.jobs.get(call.params["job_id"])
        if job is None:
            return error(404, "WKS.00149901", "The job does not exist.")
        return ok(self.state.job_v2(job))

    async def _list_sub_jobs(self, call: Call) -> Response:
        if not call.query.get("job_type"):
            return error(400, "WKS.00149901", "The request message is invalid: job_type is required.")
        offset, limit = _page(call.query, default_limit=10)
        if limit is None:
            return error(400, "WKS.00149901", "The request message is invalid: limit must be 1 to 100.")
        items = [item for job in self.state.jobs.values() for item in self.state.sub_jobs_v2(job)
                 if call.query["job_type"] == "CREATE_SERVER"]
        if job_id := call.query.get("job_id"):
            items = [i for i in items if i["job_id"] == job_id]
        if status := call.query.get("status"):
            items = [i for i in items if i["status"] == status]
        return ok({"count": len(items), "items": items[offset:offset + limit]})

    async def _show_subnet(self, call: Call) -> Response:
        subnet = self.state.subnets.get(call.params["subnet_id"])
        if subnet is None:
            return error(404, "VPC.0202", "Subnet does not exist.")
        return ok({"subnet": {**subnet, "availability_zone": "cn-north-4a", "status": "ACTIVE"}})

    # BSS ---------------------------------------------------------------------------------------

    async def _show_order(self, call: Call) -> Response:
        """ShowCustomerOrderDetails: line items 10 a page unless `limit` (at most 100) says otherwise."""
        order = self.state.orders.get(call.params["order_id"])
        if order is None:
            return error(400, "CBC.30000010", "The order is invalid or does not exist.")
        offset, limit = _page(call.query, default_limit=10)
        if limit is None:
            return error(400, "CBC.0100", "Parameter error: limit must be 1 to 100.")
        details = self.state.order_details(order)
        lines = self.state.line_items(order, details["order_line_items"])
        details["total_count"], details["order_line_items"] = len(lines), lines[offset:offset + limit]
        if order.id in self.state.sub_orders:
            details["order_info"]["sub_order_infos"] = self._sub_order_infos(order.id)
        return ok(details)

    def _order_info(self, order: Order) -> dict[str, Any]:
        """An order as ListCustomerOrders lists it (`CustomerOrderV2`)."""
        shown = self.state.orders[self.state.sub_orders[order.id][0]] if order.id in self.state.sub_orders else order
        return {"order_id": order.id, "status": shown.status(time.time(), self.config.order_seconds),
                "create_time": iso(order.created), "service_type_code": order.service_type_code, "order_type": 1,
                "source_type": 1, "amount_after_discount": float(order.amount_due),
                "official_amount": float(order.amount),
                "currency": "CNY", "measure_id": 1}

    def _sub_order_infos(self, parent_id: str) -> list[dict[str, Any]]:
        return [self._order_info(self.state.orders[sub]) for sub in self.state.sub_orders[parent_id]]

    async def _list_orders(self, call: Call) -> Response:
        """ListCustomerOrders with the filters the official SDK sends (times in UTC, `yyyy-MM-ddTHH:mm:ssZ`)."""
        q = call.query
        try:
            begin = _bss_time(q.get("create_time_begin"), 0.0)
            end = _bss_time(q.get("create_time_end"), float("inf"))
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", 10))
        except ValueError:
            return error(400, "CBC.0100", "Parameter error: a time or number is malformed.")
        if not 1 <= limit <= 100 or offset < 0:
            return error(400, "CBC.0100", "Parameter error: limit must be 1 to 100.")
        now = time.time()
        # A combined transaction's orders are listed inside it, not on their own.
        orders = [o for o in self.state.orders.values()
                  if begin <= o.created <= end and o.id not in self.state.parent_order]
        if service := q.get("service_type_code"):
            orders = [o for o in orders if o.service_type_code == service]
        if order_id := q.get("order_id"):
            orders = [o for o in orders if o.id == order_id]
        if status := q.get("status"):
            orders = [o for o in orders if str(o.status(now, self.config.order_seconds)) == status]
        if q.get("order_type") not in (None, "1"):
            orders = []  # the sandbox only has new purchases
        orders.sort(key=lambda o: o.created, reverse=q.get("order_by", "-createTime").startswith("-"))
        infos = [{**self._order_info(o),
                  **({"sub_order_infos": self._sub_order_infos(o.id)} if o.id in self.state.sub_orders else {})}
                 for o in orders]
        return ok({"total_count": len(infos), "order_infos": infos[offset:offset + limit]})

    async def _order_discounts(self, call: Call) -> Response:
        """ListOrderDiscounts: what a pending order can be paid with (needs billing:contract:viewDiscount)."""
        if not self.state.can_view_discounts:
            return _forbidden(call.request.url.path)
        order_id = call.query.get("order_id")
        if not order_id:
            return error(400, "CBC.0100", "Parameter error: order_id is required.")
        order = self.state.orders.get(order_id)
        if order is None:
            return error(400, "CBC.30000010", "The order is invalid or does not exist.")
        return ok({"discounts": self.state.order_discounts(order)})

    async def _pay_order(self, call: Call) -> Response:
        """PayOrders as the SDK documents it: "YES" needs exactly one discount_infos entry, "NO" none; an
        order-price adjustment (609) the order has must be used (UNCONFIRMED code: the sandbox's CBC.0101)."""
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("use_coupon") not in ("YES", "NO") or body.get("use_discount") not in ("YES", "NO"):
            return error(400, "CBC.0100", "Parameter error: use_coupon and use_discount are required.")
        infos = body.get("discount_infos")
        if body["use_discount"] == "NO" and infos:
            return error(400, "CBC.0100", "Parameter error: discount_infos is not allowed when use_discount is NO.")
        if body["use_discount"] == "YES" and not (isinstance(infos, list) and len(infos) == 1
                                                  and isinstance(infos[0], dict)):
            return error(400, "CBC.0100", "Parameter error: discount_infos must have exactly one entry.")
        if body["use_coupon"] == "YES" and not body.get("coupon_infos"):
            return error(400, "CBC.0100", "Parameter error: coupon_infos is required when use_coupon is YES.")
        order = self.state.orders.get(str(body.get("order_id")))
        if order is None:
            return error(400, "CBC.30000010", "The order is invalid or does not exist.")
        discount = None
        if body["use_discount"] == "YES" and isinstance(infos, list):
            wanted = infos[0]
            discount = next((d for d in order.discounts if d.id == wanted.get("id") and d.type == wanted.get("type")),
                            None)
            if discount is None:
                return error(400, "CBC.0101", "Invalid parameter: the discount cannot be used for this order.")
        if any(d.type == PRICE_ADJUSTMENT for d in order.discounts) and (discount is None
                                                                         or discount.type != PRICE_ADJUSTMENT):
            return error(400, "CBC.0101", "Invalid parameter: the order-price adjustment discount must be used.")
        code = self.state.pay(order, discount)
        if code == "CBC.99005003":
            return error(400, code, "Insufficient balance.")
        if code is not None:
            return error(400, code, "The order status has changed and the order cannot be paid.")
        return Response(status_code=204, headers={"X-Request-Id": secrets.token_hex(16)})

    async def _cancel_order(self, call: Call) -> Response:
        body = call.body if isinstance(call.body, dict) else {}
        order = self.state.orders.get(str(body.get("order_id")))
        if order is None:
            return error(400, "CBC.30000010", "The order is invalid or does not exist.")
        if order.status(time.time(), self.config.order_seconds) != 6:
            return error(400, "CBC.99003106", "The order status has changed and the order cannot be cancelled.")
        order.cancelled_at = time.time()
        return ok({})

    async def _order_resources(self, call: Call) -> Response:
        self.state.advance()  # servers follow their jobs and orders
        body = call.body if isinstance(call.body, dict) else {}
        order = self.state.orders.get(str(body.get("order_id")))
        if order is None or order.status(time.time(), self.config.order_seconds) != 5:
            return ok({"data": [], "total_count": 0})
        data = [{"resource_id": sid, "resource_name": self.state.servers[sid].name if sid in self.state.servers else sid,
                 "region_code": self.config.region, "service_type_code": "hws.service.type.vdi",
                 "resource_type_code": "hws.resource.type.vdi", "is_main_resource": 1, "status": 2,
                 "effective_time": iso(order.paid_at or order.created)} for sid in order.server_ids]
        return ok({"data": data, "total_count": len(data)})

    # Control -----------------------------------------------------------------------------------

    async def _control_log(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.log.clear()
            return Response(status_code=204)
        operation = request.query_params.get("operation")
        return JSONResponse({"calls": self.calls(operation)})

    async def _control_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults = FaultInjector()
            return Response(status_code=204)
        body = await request.json()
        if "operation" in body:
            self.faults.add(ScriptedFault.model_validate(body))
        else:
            self.faults.configure(FaultSettings.model_validate(body))
        return Response(status_code=204)

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)

    async def _control_tokens(self, request: Request) -> Response:
        self.state.tokens.clear()
        return Response(status_code=204)

    async def _control_fail_next(self, request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        self.state.fail_next_jobs += int(body.get("count", 1))
        return Response(status_code=204)

    async def _control_bulk_jobs(self, request: Request) -> Response:
        """Many one-server jobs at once (benchmarks): {"count": N, "seconds": S} → {"job_ids": [...]}."""
        body = await request.json()
        group = next(iter(self.state.groups.values()))
        subnet = self.state.subnets[group["subnet_id"]]
        spec = {"server_group_id": group["id"], "subscription_num": 1, "product_id": group["product_id"],
                "subnet_id": subnet["id"], "vpc_id": subnet["vpc_id"]}
        saved = self.config.job_seconds, self.config.instance_quota
        self.config.job_seconds, self.config.instance_quota = float(body.get("seconds", 60)), 10**9
        try:
            ids = [self.state.create_job(spec).id for _ in range(int(body["count"]))]
        finally:
            self.config.job_seconds, self.config.instance_quota = saved
        return JSONResponse({"job_ids": ids})

    async def _control_foreign_order(self, request: Request) -> Response:
        """Someone else's order in the same account: {"service_type_code", "spec", "at" (epoch s), "amount",
        "lines_before" (that many line items of other products listed before the order's own)}."""
        body = await request.json()
        order = self.state.place_foreign_order(
            service_type_code=str(body.get("service_type_code") or "hws.service.type.ec2"),
            spec=dict(body.get("spec") or {}), at=float(body.get("at") or time.time()),
            amount=Decimal(str(body.get("amount") or "100.00")))
        if lines := int(body.get("lines_before") or 0):
            self.state.extra_lines[order.id] = filler_lines(order.id, lines)
        return JSONResponse({"order_id": order.id})

    async def _control_balance(self, request: Request) -> Response:
        body = await request.json()
        self.state.balance = Decimal(str(body["amount"]))
        return Response(status_code=204)

    async def _control_order_discount(self, request: Request) -> Response:
        """Offer a discount for one order: {"order_id", "discount_id", "discount_type" (609: must be used),
        "amount_off"}; it is taken off the order's first line."""
        body = await request.json()
        order = self.state.orders.get(str(body.get("order_id")))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        off = [Decimal(str(body["amount_off"]))] + [Decimal(0)] * (len(order.lines) - 1)
        order.discounts.append(Discount(str(body["discount_id"]), int(body["discount_type"]), off))
        return Response(status_code=204)

    async def _control_master_pay(self, request: Request) -> Response:
        """The master account pays a member's proxy payment order: {"order_id"}."""
        body = await request.json()
        order = self.state.orders.get(str(body.get("order_id")))
        if order is None or not self.state.master_pays(order):
            return JSONResponse({"error": "no proxy payment waits for this order"}, status_code=409)
        return Response(status_code=204)

    async def _control_open_fewer(self, request: Request) -> Response:
        """The next order paid opens this many servers fewer than it ordered (billing refunds them): {"count"}."""
        body = await request.json()
        self.state.open_fewer_next = int(body.get("count", 1))
        return Response(status_code=204)

    async def _control_account(self, request: Request) -> Response:
        """How the account is set up: {"finance_hosted": bool, "can_view_discounts": bool} (either)."""
        body = await request.json()
        for name in ("finance_hosted", "can_view_discounts"):
            if name in body:
                setattr(self.state, name, bool(body[name]))
        return Response(status_code=204)


def _bss_time(text: str | None, default: float) -> float:
    if not text:
        return default
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def is_global_service(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in GLOBAL_SERVICE_PREFIXES)


def _forbidden(path: str) -> Response:
    """A permission refusal: IAM answers in Keystone's shape, other services through the gateway."""
    if path.startswith("/v3/"):
        return JSONResponse({"error": {"code": 403, "title": "Forbidden",
                                       "message": "You are not authorized to perform the requested action."}},
                            status_code=403, headers={"X-Request-Id": secrets.token_hex(16)})
    return error(403, "APIGW.0302", "The IAM user is not authorized to access this API.")


def _page(query: dict[str, str], default_limit: int) -> tuple[int, int | None]:
    try:
        offset = max(int(query.get("offset", 0)), 0)
        limit = int(query.get("limit", default_limit))
    except ValueError:
        return 0, None
    return offset, limit if 1 <= limit <= 100 else None
