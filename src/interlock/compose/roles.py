"""Roles as data: a folder with `role.yaml` and its implementation (a script run as root
over SSH, or an Ansible playbook run with ansible-runner). The library is interlock's
built-in roles plus a user's folders; a user's role of the same name wins.

A role declares every input it gets: node `facts` (what the node's site told interlock),
its own `attributes` (schema and defaults; set in the deployment file) and `wants`
(attributes other node-roles of the deployment provide). A run is given those and
nothing else, and must write every attribute it `provides`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interlock import yamlfile
from interlock.compose.facts import FACT_NAMES
from interlock.yamlfile import FieldProblem

NAME = r"^[a-z][a-z0-9-]{0,62}$"
INPUT = r"^[a-z][a-z0-9_]{0,62}$"
AttrType = Literal["string", "integer", "boolean", "list", "object", "files", "cidr"]
_PYTHON: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "list": list,
    "object": dict,
    "files": list,
    "cidr": str,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(Strict):
    """One of a role's own inputs. No default: the deployment file must set it. `files`:
    paths on this host (relative to the deployment file), copied to the node; the run gets
    the node's paths."""

    type: AttrType = "string"
    default: Any = None
    required: bool = False
    description: str = ""
    # cidr: a range of the deployment's own (pods, services) that must not overlap the
    # networks of the sites its nodes are on (checked before anything is made, and on the
    # nodes' own networks before the role runs).
    apart_from_networks: bool = False

    def check(self, value: Any) -> str | None:
        """Why `value` does not fit, or None."""
        want = _PYTHON[self.type]
        if self.type == "integer" and isinstance(value, bool):
            return "must be an integer"
        if not isinstance(value, want):
            return f"must be {'a list of paths' if self.type == 'files' else 'a ' + self.type}"
        paths: list[Any] = value if isinstance(value, list) else []
        if self.type == "files" and not all(isinstance(v, str) and v for v in paths):
            return "must be a list of paths"
        if self.type == "cidr":
            import ipaddress

            try:
                ipaddress.IPv4Network(value)
            except ValueError:
                return "must be an IPv4 network (address/prefix, host bits zero)"
        return None


class Want(Strict):
    """An input taken from another role's node-roles in the deployment: the first one's
    attribute (by node name), or with `all`, a list of every one's."""

    role: str = Field(pattern=NAME)
    attribute: str = Field(pattern=INPUT)
    all: bool = False


class Provided(Strict):
    description: str = ""
    secret: bool = False  # never shown (status, JSON, logs): e.g. a join token


class Role(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    requires: tuple[str, ...] = ()  # roles active on the same node first
    wants: dict[str, Want] = {}
    facts: tuple[str, ...] = ()  # the node's infrastructure facts it reads
    attributes: dict[str, Attribute] = {}
    provides: dict[str, Provided] = {}
    # All peers are a sync point: no node-role of it runs before every peer's node has
    # what the role requires.
    cluster: bool = False
    script: str | None = None  # run as root on the node: inputs in, outputs written
    playbook: str | None = None  # run with ansible-runner from this host
    timeout: float = Field(default=900, gt=0, le=86400)
    folder: Path = Field(default=Path("."), exclude=True)

    @field_validator("requires")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for i, name in enumerate(v):
            if not re.match(NAME, name):
                raise FieldProblem([i], "not a role name")
        return v

    @field_validator("facts")
    @classmethod
    def _facts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(v):
            if name not in FACT_NAMES:
                raise FieldProblem([i], f"unknown fact; one of: {', '.join(FACT_NAMES)}")
        return v

    @field_validator("provides", mode="before")
    @classmethod
    def _provides_list(cls, v: Any) -> Any:
        return {name: {} for name in v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> Role:
        import re

        if (self.script is None) == (self.playbook is None):
            raise FieldProblem(["script"], "give exactly one of script or playbook")
        seen: dict[str, str] = {}
        for kind, names in (("facts", self.facts), ("wants", self.wants),
                            ("attributes", self.attributes)):  # fmt: skip
            for name in names:
                if not re.match(INPUT, name):
                    raise FieldProblem([kind, name], "input names: lower case, digits, _")
                if name in seen:
                    raise FieldProblem([kind, name], f"the same input name as in {seen[name]}")
                seen[name] = kind
        for name in self.provides:
            if not re.match(INPUT, name):
                raise FieldProblem(["provides", name], "attribute names: lower case, digits, _")
        if self.name in self.requires:
            raise FieldProblem(["requires"], "a role cannot require itself")
        for name, attr in self.attributes.items():
            problem = attr.check(attr.default) if attr.default is not None else None
            if problem:
                raise FieldProblem(["attributes", name, "default"], problem)
        return self

    @property
    def implementation(self) -> Path:
        return self.folder / str(self.script or self.playbook)

    @property
    def inputs(self) -> list[str]:
        return [*self.facts, *self.wants, *self.attributes]

    def defaults(self) -> dict[str, Any]:
        return {k: a.default for k, a in self.attributes.items() if a.default is not None}


def load_role(folder: Path) -> Role:
    """`folder/role.yaml` as a Role; one line naming file, line and field if it is wrong."""
    path = folder / "role.yaml"
    data, _tree = yamlfile.parse(path, yamlfile.read_text(path))
    role = yamlfile.load(path, Role)
    if isinstance(data, dict) and data.get("name") != folder.name:
        raise yamlfile.bad(f"{path}: field 'name': must be the folder's name ({folder.name})")
    role = role.model_copy(update={"folder": folder})
    if not role.implementation.is_file():
        field = "script" if role.script else "playbook"
        raise yamlfile.bad(f"{path}: field '{field}': no such file in the role's folder")
    return role


def builtin_dir() -> Path:
    return Path(str(resources.files("interlock.compose") / "library"))


class Library:
    """Roles by name: the built-in ones, then each user folder's (a later one wins)."""

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.roles: dict[str, Role] = {}
        for root in [builtin_dir(), *(folders or [])]:
            if not root.is_dir():
                raise yamlfile.bad(f"{root}: no such folder of roles")
            for folder in sorted(p for p in root.iterdir() if (p / "role.yaml").is_file()):
                self.roles[folder.name] = load_role(folder)

    def get(self, name: str) -> Role | None:
        return self.roles.get(name)

    def closure(self, names: list[str]) -> list[str]:
        """`names` and every role they require, required ones first (unknown names kept,
        for the caller to report)."""
        out: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in out or name in path:
                return
            role = self.roles.get(name)
            for req in role.requires if role else ():
                visit(req, (*path, name))
            out.append(name)

        for name in names:
            visit(name, ())
        return out
