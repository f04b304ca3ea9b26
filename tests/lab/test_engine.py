"""The engine is a context, passed: engines over two homes, one after the other in one
process, each see only their own state; looking at sites and nodes writes no secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

from interlock.engine import open_engine
from interlock.model import Traits
from interlock.services import deploy
from interlock_lab import labdir
from tests.lab.conftest import Cli, Lab


def test_two_homes_one_after_the_other_in_one_process(lab: Lab, tmp_path: Path) -> None:
    sites = Path(lab.state["dir"]) / labdir.SITES
    first, second = tmp_path / "first", tmp_path / "second"

    async def up(home: Path, name: str) -> list[str]:
        e = open_engine(sites, home)
        nodes = await deploy.up(e, name, 1, ["aws"], Traits(), lambda _: None)
        assert [n.status for n in nodes] == ["ready"], nodes
        return [n.name for n in deploy.nodes(e)]

    async def up_and_down(home: Path, name: str) -> tuple[list[str], list[str]]:
        listed = await up(home, name)  # then, on the same event loop, without workflows:
        return listed, (await deploy.down(open_engine(sites, home), name)).released

    assert asyncio.run(up(first, "one")) == ["one-1"]
    # Nothing of the first home's in the second.
    assert asyncio.run(up_and_down(second, "two")) == (["two-1"], ["two-1"])
    for home in (first, second):
        assert (home / "workflows.sqlite").exists()  # each home's own durable workflows
    again = open_engine(sites, first)  # the first home opened again in the same process
    assert [n.name for n in deploy.nodes(again)] == ["one-1"]
    assert asyncio.run(deploy.down(again, "one")).released == ["one-1"]
    assert deploy.nodes(open_engine(sites, second)) == []


def secrets_in(home: Path) -> list[str]:
    return [
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    ]


def test_looking_writes_no_key_and_no_secret(lab: Lab, cli: Cli) -> None:
    cli("sites")
    cli("plan", "--site", "aws,metal")
    cli("ls")
    cli("inventory")
    assert not secrets_in(cli.home) and not (cli.home / "keys").exists()
    (node,) = cli.json("up", "k", "--site", "aws")  # a node needs the platform key: made now
    assert node["status"] == "ready" and secrets_in(cli.home) == ["platform_ed25519"]
