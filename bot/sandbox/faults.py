"""Faults the sandbox injects on demand: scripted one-offs and a random rate of bad answers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

# 429 / 500 / 503: refused before the service acts. "slow": answered late (after `slow_seconds`).
# "500-after": the service acts, then the gateway answers 500. "hang": it acts, then answers after
# `hang_seconds`, longer than any client waits: both leave the caller not knowing what happened.
# "404": the gateway does not know the API (APIGW.0101), as for an API not published in a region.
# "403": the caller may not do this (IAM answers in Keystone's shape), as for keys without the permission.
FaultKind = Literal["429", "500", "503", "404", "403", "slow", "500-after", "hang"]
RANDOM_KINDS: tuple[FaultKind, ...] = ("429", "500", "503", "slow")


class FaultSettings(BaseModel):
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    kinds: list[FaultKind] = Field(default_factory=lambda: list(RANDOM_KINDS))
    operations: list[str] | None = None  # None: every cloud operation
    slow_seconds: float = Field(default=1.0, ge=0)
    hang_seconds: float = Field(default=120.0, ge=0)
    seed: int | None = None


class ScriptedFault(BaseModel):
    operation: str
    kind: FaultKind
    count: int = Field(default=1, ge=1)


@dataclass
class FaultInjector:
    settings: FaultSettings = field(default_factory=FaultSettings)
    script: list[ScriptedFault] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def configure(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)

    def add(self, fault: ScriptedFault) -> None:
        self.script.append(fault)

    def pick(self, operation: str) -> FaultKind | None:
        for index, fault in enumerate(self.script):
            if fault.operation == operation:
                if fault.count <= 1:
                    del self.script[index]
                else:
                    self.script[index] = fault.model_copy(update={"count": fault.count - 1})
                return fault.kind
        s = self.settings
        if s.rate and (s.operations is None or operation in s.operations) and self.rng.random() < s.rate:
            return self.rng.choice(s.kinds)
        return None
