"""The guideline: capabilities and their checks, as versioned, validated YAML.

Modelled on OpenStack's interop (DefCore) guidelines: a capability has a status
(advisory, required, deprecated, removed) and checks with stable UUIDs, names and
aliases; a flagged check is waived, with a reason and a date.
"""

from __future__ import annotations

import datetime
import uuid
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from interlock import yamlfile
from interlock.model import STEPS, Traits
from interlock.yamlfile import FieldProblem

CheckKind = Literal[
    "step",
    "selected",
    "login-consistent",
    "post-provisioning",
    "released",
    "ssh-ready",
    "not-implemented",
]
DEFAULT = "2026.12"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(Strict):
    uuid: uuid.UUID
    name: str = Field(min_length=1)
    aliases: list[str] = []
    kind: CheckKind
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _params(self) -> Check:
        """Each kind's parameters, checked here: a guideline that loads can be graded."""
        p = self.params
        if self.kind == "step":
            if p.get("step") not in STEPS:
                raise FieldProblem(("params", "step"), f"one of the steps: {', '.join(STEPS)}")
            fixups = p.get("fixups", [])
            if not (isinstance(fixups, list) and all(isinstance(f, str) for f in fixups)):
                raise FieldProblem(("params", "fixups"), "a list of texts")
        if self.kind == "ssh-ready":
            limit = p.get("max_seconds", 120)
            if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
                raise FieldProblem(("params", "max_seconds"), "a number of seconds above 0")
        return self


class Capability(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str
    status: Literal["advisory", "required", "deprecated", "removed"]
    required_since: str | None = None
    checks: list[Check] = Field(min_length=1)


class Flagged(Strict):
    uuid: uuid.UUID
    reason: str = Field(min_length=1)
    date: datetime.date


class Request(Strict):
    os: str = "ubuntu-24.04"
    cpus: int = 1
    memory_gib: float = 1

    def traits(self) -> Traits:
        return Traits(os=self.os, cpus=self.cpus, memory_gib=self.memory_gib)


class Guideline(Strict):
    schema_: Literal[1] = Field(alias="schema")
    id: str = Field(min_length=1)
    status: Literal["draft", "approved", "superseded"]
    description: str = ""
    request: Request = Request()
    capabilities: list[Capability] = Field(min_length=1)
    flagged: list[Flagged] = []

    @model_validator(mode="after")
    def _unique(self) -> Guideline:
        ids = [c.id for c in self.capabilities]
        uuids = [str(ch.uuid) for c in self.capabilities for ch in c.checks]
        for what, values in (("capability id", ids), ("check uuid", uuids)):
            dup = next((v for v in values if values.count(v) > 1), None)
            if dup is not None:
                raise ValueError(f"{what} {dup} appears twice")
        unknown = [f.uuid for f in self.flagged if str(f.uuid) not in set(uuids)]
        if unknown:
            raise ValueError(f"flagged check {unknown[0]} is not in the guideline")
        return self

    def waived(self, check: Check) -> Flagged | None:
        return next((f for f in self.flagged if f.uuid == check.uuid), None)


def builtin(name: str = DEFAULT) -> Path:
    return Path(str(resources.files("interlock.conform") / "guidelines" / f"{name}.yaml"))


def load(path: Path | None = None) -> Guideline:
    """The guideline in `path` (default: the built-in one); one clear error if it is bad."""
    return yamlfile.load(path or builtin(), Guideline)
