"""The CreateAppServers contract: request body, response and error body, with every documented rule.

`POST /v1/{project_id}/app-servers/actions/create`. Each rule fails with a sentence a Slack user can act
on and names the field (dotted path into the body), so the modal can show it next to the right input.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bot.digits import ascii_int, quoted

DISK_TYPES = ("ESSD", "SSD", "GPSSD", "SAS", "SATA")
PERIOD_MONTH = 2
PERIOD_YEAR = 3
PERIOD_LIMITS = {PERIOD_MONTH: (1, 9, "months"), PERIOD_YEAR: (1, 3, "years")}
MAX_SERVERS_PER_REQUEST = 100
MAX_NICS = 5
SYSTEM_DISK_MIN_GB = 10
SYSTEM_DISK_MAX_GB = 1024

ChargingMode = Literal["prePaid", "postPaid"]


def _fail(message: str, field: str | None = None) -> NoReturn:
    """Raise a rule failure; `field` overrides the location for rules that span several fields."""
    context = {"field": field} if field else None
    raise PydanticCustomError("spec_rule", message.replace("{", "(").replace("}", ")"), context)


def _text(value: object, label: str, max_len: int) -> str:
    if value is None or not isinstance(value, str) or not value.strip():
        _fail(f"{label} is required.")
    text = value.strip()
    if len(text) > max_len:
        _fail(f"{label} must be at most {max_len} characters (it has {len(text)}).")
    return text


def _optional_text(value: object, label: str, max_len: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, label, max_len)


class _ApiModel(BaseModel):
    # Unknown keys are refused: a typo in a field name would otherwise be dropped silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Nic(_ApiModel):
    subnet_id: str | None = None
    ip_address: str | None = None

    @field_validator("subnet_id", mode="before")
    @classmethod
    def _subnet(cls, v: object) -> str | None:
        return _optional_text(v, "The NIC subnet ID", 255)

    @field_validator("ip_address", mode="before")
    @classmethod
    def _ip(cls, v: object) -> str | None:
        return _optional_text(v, "The NIC IP address", 255)


class Volume(_ApiModel):
    type: str
    size: int
    cluster_id: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _disk_type(cls, v: object) -> str:
        if v is None or v == "":
            _fail("Choose a system disk type.")
        if v not in DISK_TYPES:
            _fail(f"System disk type must be one of {', '.join(DISK_TYPES)} (got {quoted(v)}).")
        return str(v)

    @field_validator("size", mode="before")
    @classmethod
    def _disk_size(cls, v: object) -> int:
        size = _whole_number(v, "System disk size")
        if not (SYSTEM_DISK_MIN_GB <= size <= SYSTEM_DISK_MAX_GB) or size % 10:
            _fail(
                f"System disk size must be a multiple of 10 GB between {SYSTEM_DISK_MIN_GB} and "
                f"{SYSTEM_DISK_MAX_GB} (got {size})."
            )
        return size

    @field_validator("cluster_id", mode="before")
    @classmethod
    def _cluster(cls, v: object) -> str | None:
        return _optional_text(v, "The storage pool ID", 255)


class WdhParam(_ApiModel):
    """Dedicated-host placement (`scheduler_hints`)."""

    dedicated_host_id: str | None = None
    tenancy: str | None = None

    @field_validator("dedicated_host_id", mode="before")
    @classmethod
    def _host(cls, v: object) -> str | None:
        host = _optional_text(v, "The dedicated host ID", 255)
        # A dedicated host id is a UUID; an id here holds letters, digits, dots, hyphens and underscores only.
        if host is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            _fail("The dedicated host ID may hold only letters, digits, dots, hyphens and underscores.")
        return host

    @field_validator("tenancy", mode="before")
    @classmethod
    def _tenancy(cls, v: object) -> str | None:
        if v is None or v == "":
            return None
        if v != "dedicated":
            _fail(f"Tenancy can only be 'dedicated' (got {quoted(v)}).")
        return "dedicated"


class CreateServerExtendParam(_ApiModel):
    charging_mode: ChargingMode = "postPaid"
    period_type: int | None = None
    period_num: int | None = None
    is_auto_renew: bool | None = None
    is_auto_pay: bool | None = None

    @field_validator("charging_mode", mode="before")
    @classmethod
    def _mode(cls, v: object) -> object:
        if v is None:
            return "postPaid"
        if v not in ("prePaid", "postPaid"):
            _fail(f"Billing must be prePaid (yearly/monthly) or postPaid (pay-per-use), not {quoted(v)}.")
        return v

    @field_validator("period_type", "period_num", mode="before")
    @classmethod
    def _period_number(cls, v: object, info: ValidationInfo) -> int | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return _whole_number(v, _LABELS[str(info.field_name)])

    @model_validator(mode="after")
    def _period_rules(self) -> CreateServerExtendParam:
        base = "create_server_extend_param"
        if self.charging_mode == "postPaid":
            # The API applies these to yearly/monthly only; is_auto_renew is accepted with pay-per-use too.
            for name in ("period_type", "period_num", "is_auto_pay"):
                if getattr(self, name) is not None:
                    _fail(
                        f"{_LABELS[name]} only applies to yearly/monthly billing; leave it empty for "
                        "pay-per-use.",
                        f"{base}.{name}",
                    )
            return self
        if self.period_type not in PERIOD_LIMITS:
            _fail("Choose month or year as the period unit for yearly/monthly billing.",
                  f"{base}.period_type")
        low, high, unit = PERIOD_LIMITS[self.period_type]
        if self.period_num is None or not (low <= self.period_num <= high):
            _fail(f"The period must be {low} to {high} {unit} (got {self.period_num}).", f"{base}.period_num")
        return self


_LABELS = {
    "period_type": "The period unit",
    "period_num": "The period length",
    "is_auto_pay": "Auto-pay",
}


_MAX_DIGITS = 9  # every number in the contract is far smaller


def _whole_number(v: object, label: str) -> int:
    if v is None or (isinstance(v, str) and not v.strip()):
        _fail(f"{label} is required.")
    if isinstance(v, bool):
        _fail(f"{label} must be a whole number.")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        # ASCII digits, a few: `int()` would take "٣" and "1_000", and choke on thousands of digits.
        number = ascii_int(v.strip(), max_digits=_MAX_DIGITS)
        if number is not None:
            return number
        if v.strip().isascii() and v.strip().isdigit():
            _fail(f"{label} is far too large ({len(v.strip())} digits).")
        _fail(f"{label} must be a whole number in the digits 0-9 (got {quoted(v)}).")
    _fail(f"{label} must be a whole number (got {quoted(v)}).")


class CreateAppServersRequest(_ApiModel):
    """Request body of CreateAppServers (every field of the API page's tables)."""

    type: Literal["createApps"] = "createApps"
    server_group_id: str
    subscription_num: int
    product_id: str
    root_volume: Volume
    subnet_id: str
    vpc_id: str
    flavor_id: str | None = None
    availability_zone: str | None = None
    os_type: str | None = None
    ou_name: str | None = None
    nics: tuple[Nic, ...] | None = None
    scheduler_hints: WdhParam | None = None
    update_access_agent: bool | None = None
    create_server_extend_param: CreateServerExtendParam | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, v: object) -> str:
        if v != "createApps":
            _fail(f"The request type must be 'createApps' (got {quoted(v)}).")
        return "createApps"

    @field_validator("server_group_id", mode="before")
    @classmethod
    def _group(cls, v: object) -> str:
        return _text(v, "Server group", 128)

    @field_validator("product_id", mode="before")
    @classmethod
    def _product(cls, v: object) -> str:
        return _text(v, "Product", 128)

    @field_validator("subnet_id", mode="before")
    @classmethod
    def _subnet(cls, v: object) -> str:
        return _text(v, "Subnet", 255)

    @field_validator("vpc_id", mode="before")
    @classmethod
    def _vpc(cls, v: object) -> str:
        return _text(v, "VPC", 255)

    @field_validator("flavor_id", mode="before")
    @classmethod
    def _flavor(cls, v: object) -> str | None:
        return _optional_text(v, "Flavor", 255)

    @field_validator("availability_zone", mode="before")
    @classmethod
    def _az(cls, v: object) -> str | None:
        return _optional_text(v, "Availability zone", 255)

    @field_validator("ou_name", mode="before")
    @classmethod
    def _ou(cls, v: object) -> str | None:
        return _optional_text(v, "Organizational unit (OU)", 255)

    @field_validator("subscription_num", mode="before")
    @classmethod
    def _count(cls, v: object) -> int:
        count = _whole_number(v, "Number of servers")
        if not (1 <= count <= MAX_SERVERS_PER_REQUEST):
            _fail(f"Number of servers must be between 1 and {MAX_SERVERS_PER_REQUEST} (got {count}).")
        return count

    @field_validator("os_type", mode="before")
    @classmethod
    def _os(cls, v: object) -> str | None:
        if v is None or v == "":
            return None
        if v != "Windows":
            _fail(f"Only Windows app servers can be created (got {quoted(v)}).")
        return "Windows"

    @field_validator("nics", mode="before")
    @classmethod
    def _nic_count(cls, v: object) -> object:
        if v is None:
            return None
        if isinstance(v, (list, tuple)) and len(v) > MAX_NICS:
            _fail(f"At most {MAX_NICS} network interfaces are allowed (got {len(v)}).")
        return v

    @model_validator(mode="after")
    def _dedicated_host_needs_pay_per_use(self) -> CreateAppServersRequest:
        if self.scheduler_hints is not None and self.charging_mode == "prePaid":
            _fail("A dedicated host can only be used with pay-per-use billing.", "scheduler_hints")
        return self

    @property
    def charging_mode(self) -> ChargingMode:
        extend = self.create_server_extend_param
        return extend.charging_mode if extend else "postPaid"

    @property
    def is_prepaid(self) -> bool:
        return self.charging_mode == "prePaid"

    def to_api_body(self) -> dict[str, Any]:
        """Exactly the API's field names; anything unset is left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def canonical_json(self) -> str:
        return json.dumps(self.to_api_body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def spec_hash(self) -> str:
        """SHA-256 of the canonical body: an approval is bound to exactly this hash."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class CreateAppServersResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str | None = None
    order_id: str | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error_code: str | None = None
    error_msg: str | None = None
    request_id: str | None = None


class SpecError(ValueError):
    """The body breaks the contract; `errors` maps a dotted field path to a sentence."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def field_errors(error: ValidationError) -> dict[str, str]:
    """Turn a pydantic error into {dotted field path: sentence}, first sentence per field."""
    result: dict[str, str] = {}
    for item in error.errors():
        ctx = item.get("ctx") or {}
        field = ctx.get("field") or ".".join(str(p) for p in item["loc"]) or "body"
        if item["type"] == "spec_rule":
            message = item["msg"]
        elif item["type"] == "missing":
            message = f"{_pretty(field)} is required."
        elif item["type"] == "extra_forbidden":
            message = f"'{field}' is not a field of CreateAppServers."
        else:
            message = f"{_pretty(field)}: {item['msg']}."
        result.setdefault(field, message)
    return result


_FIELD_LABELS = {
    "server_group_id": "Server group",
    "subscription_num": "Number of servers",
    "product_id": "Product",
    "root_volume": "System disk",
    "root_volume.type": "System disk type",
    "root_volume.size": "System disk size",
    "subnet_id": "Subnet",
    "vpc_id": "VPC",
}


def _pretty(field: str) -> str:
    return _FIELD_LABELS.get(field) or field.replace("_", " ").replace(".", " ").capitalize()


def parse_spec(data: dict[str, Any]) -> CreateAppServersRequest:
    """Validate a body; raise `SpecError` with one sentence per bad field."""
    try:
        return CreateAppServersRequest.model_validate(data)
    except ValidationError as error:
        raise SpecError(field_errors(error)) from None
