"""How the lab plugs into the product (entry points in pyproject.toml): the `interlock lab`
command group, and the running lab's sites file as the default sites file. Both are
absent where the lab's own dependencies (the `lab` extra) are not installed."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# What the lab process needs beyond the product's own dependencies (the `lab` extra).
NEEDS = ("moto", "sushy_tools", "fastapi", "uvicorn")


def installed() -> bool:
    return all(find_spec(name) is not None for name in NEEDS)


def cli() -> typer.Typer | None:
    if not installed():
        return None
    from interlock_lab.cli import app

    return app


def default_sites() -> Path | None:
    """The lab's sites file (in the default lab directory), used when the user has none."""
    if not installed():
        return None
    from interlock_lab import labdir

    return labdir.default_dir() / labdir.SITES
