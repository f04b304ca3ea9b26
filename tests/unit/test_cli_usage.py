"""A wrong command line gets a usage line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ["sites", "--bogus"],
        ["frob"],
        ["up", "x", "--count", "abc"],
        ["plan", "--cpus", "abc"],
        ["lab", "frob"],
        ["conform", "run", "--baseline"],
    ],
)
def test_usage_errors_exit_2_with_one_clear_message(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "interlock", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Error:" in done.stderr
