"""How other packages plug into interlock: Python entry points, by group.

    interlock.providers  provider kind -> a provider class (see interlock.providers)
    interlock.cli        command group name -> a function giving a typer app, or None
    interlock.sites      name -> a function giving a default sites file, or None

Listing reads package metadata only; nothing is imported until it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

PROVIDERS = "interlock.providers"
CLI = "interlock.cli"
SITES = "interlock.sites"


def names(group: str) -> list[str]:
    return sorted({ep.name for ep in entry_points(group=group)})


def load(group: str, name: str) -> Any | None:
    """The object entry point `name` of `group` names (None: no such entry point)."""
    found: list[EntryPoint] = list(entry_points(group=group, name=name))
    return found[0].load() if found else None


def offered(group: str) -> Iterator[tuple[str, Any]]:
    """(name, what its function gives) for each entry point of `group` that gives something;
    a plugin whose own dependencies are missing is passed over."""
    for ep in entry_points(group=group):
        try:
            given = ep.load()()
        except ImportError:
            continue
        if given is not None:
            yield ep.name, given
