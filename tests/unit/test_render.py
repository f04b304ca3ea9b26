"""What people read: a node's error is never cut, in a terminal or outside one."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from interlock.cli import render
from interlock.state import NodeRecord

ERROR = (
    "no site could take it: full: request: InsufficientInstanceCapacity: injected by the "
    "interlock lab; noeip: public address: InvalidParameterValue: no elastic IP [for you]"
)
NODES = [
    NodeRecord(name="web-1", deployment="web", status="ready", site="aws", step="done",
               public_ip="127.10.0.2", login_user="ubuntu",
               fixups=["root_access: root login with the platform keys enabled"]),
    NodeRecord(name="web-2", deployment="web", status="failed", site="noeip",
               step="rolled back", error=ERROR),
]  # fmt: skip


def shown(terminal: bool, width: int = 80) -> str:
    buf = io.StringIO()
    out = Console(file=buf, force_terminal=terminal, width=width, color_system=None)
    if not terminal:
        out.soft_wrap = True
    render.nodes(out, NODES, "result")
    return buf.getvalue()


def test_outside_a_terminal_each_node_is_a_line_with_its_fixups_and_error_below() -> None:
    assert shown(terminal=False).splitlines() == [
        "result:",
        "web-1  aws  ready  127.10.0.2  login ubuntu",
        "  fix-up: root_access: root login with the platform keys enabled",
        "web-2  noeip  failed",
        f"  error: {ERROR}",
    ]


def test_in_a_narrow_terminal_the_table_stays_and_the_error_is_shown_whole_below() -> None:
    text = shown(terminal=True, width=80)
    table, below = text.split("errors:\n")
    assert "┃ node" in table and "web-2" in table
    assert ERROR not in table  # cut to its column there, or folded
    # The terminal wraps the line below, nothing is cut from it.
    assert "".join(below.splitlines()) == f"  web-2: {ERROR}"


def test_a_table_outside_a_terminal_is_as_wide_as_its_contents() -> None:
    t = Table()
    t.add_column("site")
    t.add_column("endpoint")
    t.add_row("os-unlabelled", "http://127.60.0.1:5000/v3/" + "x" * 100)
    buf = io.StringIO()
    render.table(Console(file=buf, force_terminal=False, width=80), t)
    rows = [line for line in buf.getvalue().splitlines() if "os-unlabelled" in line]
    assert len(rows) == 1 and "x" * 100 in rows[0]
