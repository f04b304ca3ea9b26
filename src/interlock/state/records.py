"""What interlock keeps about nodes and sites: typed records, validated on every write.

Nothing secret is kept: node records hold addresses, ids and login names; a node's
private key lives only as a 0600 file until step 8 deletes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from interlock.model import STEP_LABELS, Fixup, StepName

NodeStatus = Literal["pending", "allocating", "ready", "failed", "deleting"]
# What long work calls with a deployment's node records as they change (CLI progress).
Progress = Callable[[list["NodeRecord"]], None]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Attempt(Record):
    """One site's try at a node: ready, or failed and why (one line)."""

    site: str
    result: Literal["ready", "failed"]
    why: str = ""


class NodeRecord(Record):
    name: str
    deployment: str
    status: NodeStatus = "pending"
    step: StepName | None = None  # the step under way, or the last one begun
    workflow_id: str | None = None
    # The request, as its workflow was (or will be) started with it: enough to start it again.
    traits: dict[str, object] = {}
    sites: list[str] = []  # in order of preference
    site: str = ""
    server_id: str | None = None
    public_ip: str | None = None
    public_ip_ref: str | None = None
    private_ip: str | None = None
    key_ref: str | None = None
    login_user: str | None = None
    host_key: str | None = None
    image: str | None = None  # the site's ids
    flavor: str | None = None
    image_name: str | None = None  # and what the site calls them
    flavor_name: str | None = None
    fixups: list[Fixup] = []
    attempts: list[Attempt] = []
    error: str | None = None
    failed_step: StepName | None = None  # where the last attempt failed
    # When each step began (Unix time), for time-to-SSH-ready and the like.
    timeline: dict[StepName, float] = {}

    @field_validator("step", "failed_step", mode="before")
    @classmethod
    def _legacy_step(cls, v: object) -> object:
        return _LEGACY.get(v, v) if isinstance(v, str) else v

    @field_validator("timeline", mode="before")
    @classmethod
    def _legacy_timeline(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v
        return {_LEGACY.get(k, k): t for k, t in v.items() if _LEGACY.get(k, k) is not None}

    @property
    def image_label(self) -> str:
        """The image as people read it: the site's name for it, with its id."""
        return named(self.image_name, self.image)

    @property
    def flavor_label(self) -> str:
        return named(self.flavor_name, self.flavor)

    @property
    def stage(self) -> str:
        """The step as people read it: "public address", "done"."""
        if self.status == "ready":
            return "done"
        return STEP_LABELS[self.step] if self.step else ""


# Records written before steps were typed named them by their labels (and a few stages).
_LEGACY: dict[str, str | None] = {
    **{label: step for step, label in STEP_LABELS.items() if label != step},
    "select": "selection",
    "start": None,
    "done": None,
    "rolled back": None,
}


def named(name: str | None, ident: str | None) -> str:
    """What a site calls a thing, with its id where that differs: people read names."""
    if name and ident and name != ident:
        return f"{name} ({ident})"
    return name or ident or "?"


class Fact(BaseModel):
    """Something learned about a site's behaviour, with what showed it."""

    site: str
    key: str
    value: str
    evidence: str
    learned: float
