"""The product stands on its own: it imports nothing of the lab, and the CLI starts without
importing any cloud SDK or the durable-workflow engine."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PRODUCT = Path(__file__).parents[2] / "src" / "interlock"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_product_imports_nothing_from_the_lab() -> None:
    offenders = {
        str(path.relative_to(PRODUCT)): lab
        for path in PRODUCT.rglob("*.py")
        if (lab := sorted(m for m in imported_modules(path) if m.startswith("interlock_lab")))
    }
    assert not offenders


@pytest.mark.parametrize("command", [["version"], ["--help"], ["ls"], ["sites"]])
def test_the_cli_starts_without_sdks_or_workflows(command: list[str], tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites: {aws: {provider: aws, region: us-east-1}}\n")
    env = {**os.environ, "INTERLOCK_HOME": str(tmp_path / "home"), "INTERLOCK_SITES": str(sites)}
    probe = (
        "import sys, runpy; sys.argv = ['interlock', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('interlock', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = ['boto3', 'openstack', 'google.cloud', 'sushy', 'dbos', 'asyncssh', 'moto']\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_without_the_lab_extra_there_is_no_lab_command() -> None:
    # The lab's plugin checks for its own dependencies (moto, sushy-tools, fastapi, uvicorn):
    # hide one and `interlock lab` is not offered, while the rest of the CLI works.
    probe = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'moto' else real(n, *a)\n"
        "sys.argv = ['interlock', '--help']\n"
        "from interlock.cli import app, main\n"
        "print('groups:', sorted(g.name or '' for g in app.registered_groups))\n"
        "main()"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "groups: ['conform']" in done.stdout
    assert " lab " not in done.stdout and " up " in done.stdout
