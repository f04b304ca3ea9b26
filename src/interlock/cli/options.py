"""Options several commands share, and turning their values into the services' types."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from interlock.engine import Engine
    from interlock.model import Traits

SitesOpt = Annotated[
    Path | None,
    typer.Option(
        "--sites",
        help="Sites file (default: $INTERLOCK_SITES, ~/.config/interlock/sites.yaml, the lab's).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SiteOpt = Annotated[
    str | None,
    typer.Option("--site", help="Sites in order of preference, comma-separated (default: all)."),
]
CpusOpt = Annotated[int, typer.Option("--cpus", min=1, help="At least this many vCPUs.")]
MemOpt = Annotated[float, typer.Option("--memory", help="At least this many GiB of memory.")]
OsOpt = Annotated[str, typer.Option("--os", help="DISTRO-VERSION, e.g. ubuntu-24.04.")]


def engine(sites_file: Path | None) -> Engine:
    from interlock.engine import open_engine

    return open_engine(sites_file)


def traits(cpus: int, memory: float, os_: str) -> Traits:
    from pydantic import ValidationError

    from interlock.errors import ExitCode, InterlockError
    from interlock.model import Traits

    try:
        return Traits(cpus=cpus, memory_gib=memory, os=os_)
    except ValidationError as e:
        first = e.errors()[0]
        raise InterlockError(
            f"--{first['loc'][0]}: {first['msg']}".replace("--memory_gib", "--memory"),
            ExitCode.BAD_INPUT,
        ) from None


def site_list(e: Engine, site: str | None) -> list[str]:
    names = [s.strip() for s in site.split(",") if s.strip()] if site else list(e.sites.sites)
    e.check_sites(names)
    return names
