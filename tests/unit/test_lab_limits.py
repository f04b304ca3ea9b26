"""The lab raises the inotify allowance systemd nodes share with the host, never lowers it."""

from __future__ import annotations

from pathlib import Path

from interlock_lab.node.limits import WANTED, raise_limits


def test_allowances_are_raised_and_never_lowered(tmp_path: Path) -> None:
    low, high = "fs/inotify/max_user_instances", "fs/inotify/max_user_watches"
    for name, value in ((low, 128), (high, WANTED[high] * 2)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"{value}\n")
    assert raise_limits(tmp_path) == {low: WANTED[low]}
    assert int((tmp_path / low).read_text()) == WANTED[low]
    assert int((tmp_path / high).read_text()) == WANTED[high] * 2  # left as it was
    assert raise_limits(tmp_path) == {}
