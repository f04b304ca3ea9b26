"""The deployment file: node groups (count, traits, roles), the roles' attributes, the
ports it publishes. Checked whole against the role library before anything is created:
an unknown role, a cycle, a wanted attribute nobody provides, a missing or mistyped
attribute, a missing file: one line naming the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from interlock import yamlfile
from interlock.compose.roles import Library, Role, Strict
from interlock.model import Traits
from interlock.yamlfile import FieldProblem


class Group(Strict):
    count: int = Field(default=1, ge=0, le=1000)
    traits: Traits = Traits()
    roles: list[str] = Field(min_length=1)


class Port(Strict):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"

    @model_validator(mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return {"port": v} if isinstance(v, int) and not isinstance(v, bool) else v


class DeploymentSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,30}$")
    sites: list[str] = []  # in order of preference; `--site` overrides
    roles_from: list[str] = []  # folders of the user's roles, relative to this file
    groups: dict[str, Group] = Field(min_length=1)
    attributes: dict[str, dict[str, Any]] = {}  # by role
    ports: list[Port] = []  # published: admitted from the operator's address
    _library: Library = PrivateAttr()
    _base: Path = PrivateAttr(default=Path("."))

    @field_validator("groups")
    @classmethod
    def _group_names(cls, v: dict[str, Group]) -> dict[str, Group]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,30}", name):
                raise FieldProblem([name], "group names: lower case letters and digits")
        return v

    @model_validator(mode="after")
    def _against_library(self, info: ValidationInfo) -> DeploymentSpec:
        base = Path((info.context or {}).get("base", "."))
        folders = []
        for i, folder in enumerate(self.roles_from):
            path = (base / folder).expanduser()
            if not path.is_dir():
                raise FieldProblem(["roles_from", i], "no such folder")
            folders.append(path)
        library = Library(folders)
        self._library, self._base = library, base
        used = self._check_roles(library)
        self._check_wants(library, used)
        self._check_attributes(library, used)
        return self

    def _check_roles(self, library: Library) -> dict[str, Role]:
        used: dict[str, Role] = {}
        for g, group in self.groups.items():
            for i, name in enumerate(group.roles):
                where: list[str | int] = ["groups", g, "roles", i]
                if library.get(name) is None:
                    known = ", ".join(sorted(library.roles))
                    raise FieldProblem(where, f"unknown role {name!r}; known: {known}")
                for req in library.closure([name]):
                    role = library.get(req)
                    if role is None:
                        raise FieldProblem(where, f"{name} needs unknown role {req!r}")
                    used[req] = role
                cycle = _cycle(library, name)
                if cycle:
                    raise FieldProblem(where, f"roles require each other: {' → '.join(cycle)}")
        return used

    def _check_wants(self, library: Library, used: dict[str, Role]) -> None:
        for name, role in used.items():
            for want_name, want in role.wants.items():
                where = self._where(name)
                source = used.get(want.role)
                if source is None:
                    raise FieldProblem(
                        where, f"{name} wants {want_name} from {want.role}, which no group has"
                    )
                if want.attribute not in source.provides:
                    raise FieldProblem(
                        where, f"{name} wants {want.attribute} that {want.role} does not provide"
                    )
        cycle = _cycle(library, *used, across=True)
        if cycle:
            raise FieldProblem(["groups"], f"roles wait for each other: {' → '.join(cycle)}")

    def _check_attributes(self, library: Library, used: dict[str, Role]) -> None:
        for name, given in self.attributes.items():
            role = used.get(name)
            if role is None:
                raise FieldProblem(["attributes", name], "no group of this deployment has it")
            for attr, value in given.items():
                declared = role.attributes.get(attr)
                if declared is None:
                    raise FieldProblem(["attributes", name, attr], f"{name} has no such attribute")
                problem = declared.check(value)
                if problem:
                    raise FieldProblem(["attributes", name, attr], problem)
                if declared.type == "files":
                    for i, file in enumerate(value):
                        if not (self._base / file).expanduser().is_file():
                            raise FieldProblem(["attributes", name, attr, i], "no such file")
        for name, role in used.items():
            for attr, declared in role.attributes.items():
                if declared.required and attr not in self.attributes.get(name, {}):
                    raise FieldProblem(["attributes", name], f"{name} needs attribute {attr!r}")

    def _where(self, role: str) -> list[str | int]:
        for g, group in self.groups.items():
            for i, name in enumerate(group.roles):
                if role in self._library.closure([name]):
                    return ["groups", g, "roles", i]
        return ["groups"]

    @property
    def library(self) -> Library:
        return self._library

    def attribute_values(self, role: Role) -> dict[str, Any]:
        """The role's own inputs: its defaults, then the file's values (files resolved
        against the file's folder)."""
        values = {**role.defaults(), **self.attributes.get(role.name, {})}
        for name, declared in role.attributes.items():
            if declared.type == "files" and name in values:
                values[name] = [str((self._base / f).expanduser().resolve()) for f in values[name]]
        return values


def overlapping(
    spec: DeploymentSpec, networks: list[tuple[str, str]]
) -> tuple[list[str | int], str] | None:
    """The first of the deployment's own ranges (a role's `cidr` attribute marked
    apart_from_networks) that overlaps one of `networks` ((where, cidr) pairs): its field
    and the problem; None where all stand apart."""
    import ipaddress

    used = {r for g in spec.groups.values() for r in spec.library.closure(g.roles)}
    for role in (spec.library.roles[name] for name in sorted(used)):
        values = spec.attribute_values(role)
        for name, attr in role.attributes.items():
            if attr.type != "cidr" or not attr.apart_from_networks or name not in values:
                continue
            mine = ipaddress.IPv4Network(values[name])
            for where, cidr in networks:
                if mine.overlaps(ipaddress.IPv4Network(cidr, strict=False)):
                    problem = f"{mine} overlaps {where} ({cidr}); choose another range"
                    return ["attributes", role.name, name], problem
    return None


def _cycle(library: Library, *start: str, across: bool = False) -> list[str]:
    """A cycle through `requires` (and, `across`, wants) from the roles `start`, or []."""

    def edges(name: str) -> list[str]:
        role = library.get(name)
        if role is None:
            return []
        return [*role.requires, *(w.role for w in role.wants.values() if across)]

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str]:
        if state.get(name) == 1:
            return [*path[path.index(name) :], name]
        if state.get(name) == 2:
            return []
        state[name] = 1
        path.append(name)
        for nxt in edges(name):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        state[name] = 2
        return []

    for name in start:
        found = visit(name)
        if found:
            return found
    return []


def load_deployment(path: Path) -> DeploymentSpec:
    """A deployment file, checked against the role library (its own `roles_from` too)."""
    return yamlfile.load(path, DeploymentSpec, context={"base": path.resolve().parent})
