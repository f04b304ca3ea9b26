"""What interlock keeps about nodes and sites: typed records, validated on every write.

Nothing secret is kept: node records hold addresses, ids and login names; a node's
private key lives only as a 0600 file until step 8 deletes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from interlock.model import STEP_LABELS, Fixup, NodeFacts, StepName

NodeStatus = Literal["pending", "allocating", "ready", "failed", "deleting"]
# What long work calls with a deployment's node records as they change (CLI progress).
Progress = Callable[[list["NodeRecord"]], None]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Attempt(Record):
    """One site's try at a node: ready, or failed and why (one line); when it held one of
    the site's slots, and which worker ran it (how limits across workers are checked)."""

    site: str
    result: Literal["ready", "failed"]
    why: str = ""
    started: float | None = None
    ended: float | None = None
    worker: str | None = None


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
    image_os: tuple[str, str] | None = None  # the image's distro and version, as selected
    fixups: list[Fixup] = []
    attempts: list[Attempt] = []
    error: str | None = None
    failed_step: StepName | None = None  # where the last attempt failed
    # When each step began (Unix time), for time-to-SSH-ready and the like.
    timeline: dict[StepName, float] = {}
    group: str | None = None  # the deployment file's node group it belongs to
    worker: str | None = None  # the executor that runs (or ran) its attempt
    facts: NodeFacts | None = None  # read once it is ready, for roles (compose)

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


class WorkerRecord(Record):
    """A process that runs durable work (`interlock worker`, or a command running its own),
    as it registers itself: a live one beats; a dead one's work is taken over."""

    executor: str  # its DBOS executor id
    host: str
    pid: int
    started: float
    kind: Literal["worker", "embedded"] = "worker"


class Fact(BaseModel):
    """Something learned about a site's behaviour, with what showed it."""

    site: str
    key: str
    value: str
    evidence: str
    learned: float


RoleState = Literal["pending", "running", "active", "error", "blocked"]


class NodeRoleRecord(Record):
    """A role bound to a node of a deployment, and where its convergence stands."""

    deployment: str
    node: str
    role: str
    group: str
    rank: int = 0  # its place in the graph's order (what it waits for comes first)
    state: RoleState = "pending"
    attempt: int = 1  # a retry after an error is a new attempt (and a new workflow)
    workflow_id: str | None = None
    # Each input, and where it came from ("fact: …", "swarm-manager on web-manager-1", …).
    inputs_from: dict[str, str] = {}
    shown_inputs: dict[str, object] = {}  # the inputs' values, secret ones left out
    digest: str | None = None  # of the inputs the active run was given
    # What the run wrote. Secret ones (a join token) are kept for the node-roles that want
    # them and never shown: not in status, JSON output or errors.
    outputs: dict[str, object] = {}
    secret: list[str] = []
    tail: str = ""  # the last lines of the run's output
    error: str | None = None
    blocked_by: str | None = None
    runs: int = 0
    sessions: int = 0  # SSH connections the last run opened
    seconds: float = 0.0  # the last run's duration

    @property
    def id(self) -> str:
        return f"{self.node}/{self.role}"

    def shown_outputs(self) -> dict[str, object]:
        return {k: ("(secret)" if k in self.secret else v) for k, v in self.outputs.items()}


class DeploymentRecord(Record):
    """A deployment as last applied: its file and what it asked for."""

    name: str
    file: str
    sites: list[str]
    spec: dict[str, object]  # the file's content, as validated
    # What runs need without the file: each role's folder, and its own attribute values
    # (defaults and the file's, files resolved to absolute paths).
    role_dirs: dict[str, str] = {}
    attributes: dict[str, dict[str, object]] = {}
    # `apply --detach`: the workers' apply under way (its workflow id), and how the last
    # one ended where it could not finish (the one-line error).
    applying: str | None = None
    error: str | None = None
