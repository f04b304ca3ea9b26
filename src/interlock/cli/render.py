"""What commands print for people: tables in a terminal, whole lines everywhere else.

rich lays everything out for an 80-column terminal when stdout is a log or a pipe: a
table's long fields come out folded into 10-character columns, or cut. Outside a
terminal, tables are printed at their natural width, text is never wrapped, and node
lists become plain lines (one node per line, its fix-ups and its error in full below
it). In a terminal, tables stay, and an error a table had to cut is shown whole below.
`--json` output does not come through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from interlock.state import NodeRecord

WIDEST = 100_000  # wide enough to measure any table at its natural width


def console(stderr: bool = False) -> Console:
    """A console that wraps text only in a terminal."""
    c = Console(stderr=stderr)
    if not c.is_terminal:
        c.soft_wrap = True
    return c


def table(out: Console, t: Table) -> None:
    """A table: as wide as the terminal, or, outside one, as wide as its contents."""
    if out.is_terminal:
        out.print(t)
        return
    width = Console(width=WIDEST).measure(t).maximum
    Console(file=out.file, width=width, color_system=None, soft_wrap=True).print(t)


def plain_table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str = "") -> Table:
    """A table of values shown as they are: a name from a sites file such as "[/x]" is
    text, never rich markup."""
    t = Table(title=Text(title) if title else None, title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(Text(str(v)) for v in row))
    return t


def lines(out: Console, texts: Sequence[str]) -> None:
    """Text that is shown as is: no markup, no highlighting, no wrapping outside a terminal."""
    for text in texts:
        out.print(text, markup=False, highlight=False)


def nodes(out: Console, records: Sequence[NodeRecord], title: str = "") -> None:
    """A node list: a table in a terminal (errors whole below it), plain lines elsewhere."""
    if not out.is_terminal:
        if title:
            lines(out, [f"{title}:"])
        lines(out, [text for n in records for text in _node_lines(n)])
        return
    out.print(node_table(records, title))
    failed = [n for n in records if n.status == "failed" and n.error]
    if failed:
        lines(out, ["errors:", *(f"  {n.name}: {n.error}" for n in failed)])


def node_table(records: Sequence[NodeRecord], title: str = "") -> Table:
    """The terminal's node table: fix-ups folded, an error on one line (cut if need be:
    `nodes` shows it whole below the table)."""
    t = Table(title=Text(title) if title else None, title_justify="left")
    for col in ("node", "site", "status", "step", "public ip", "login", "fix-ups / error"):
        t.add_column(col, overflow="fold")
    for n in records:
        note = (
            Text(n.error or "", no_wrap=True, overflow="ellipsis")
            if n.status == "failed"
            else Text("\n".join(str(f) for f in n.fixups))
        )
        shown = (n.name, n.site, n.status, n.stage, n.public_ip or "", n.login_user or "")
        t.add_row(*(Text(v) for v in shown), note)
    return t


def _node_lines(n: NodeRecord) -> list[str]:
    head = [n.name, n.site or "-", n.status]
    if n.status not in ("ready", "failed") and n.stage:
        head.append(f"({n.stage})")
    if n.public_ip:
        head.append(n.public_ip)
    if n.login_user:
        head.append(f"login {n.login_user}")
    out = ["  ".join(head)]
    out += [f"  fix-up: {f}" for f in n.fixups]
    if n.status == "failed" and n.error:
        out.append(f"  error: {n.error}")
    return out
