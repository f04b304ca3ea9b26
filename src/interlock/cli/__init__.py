"""The `interlock` command: typer sub-commands, one module per group, over the services.

Start-up stays light: only typer and rich are imported here; each command imports the
services (and through them the SDKs) it uses when it runs. Other packages add command
groups through the `interlock.cli` entry points (the lab adds `interlock lab`).
"""

from __future__ import annotations

import sys

import typer

from interlock import __version__
from interlock.cli import access, compose, conform, nodes, serve, worker
from interlock.cli.render import console
from interlock.errors import InterlockError

app = typer.Typer(
    name="interlock",
    help="Hybrid infrastructure automation: the same SSH-ready, root-secured nodes everywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # main() reports errors; a bug's traceback stays plain
)
nodes.register(app)
access.register(app)
compose.register(app)
serve.register(app)
app.command()(worker.worker)
app.add_typer(conform.app, name="conform")


@app.command()
def version() -> None:
    """Print interlock's version."""
    print(__version__)


def _builtin() -> set[str]:
    named = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return named | {g.name or "" for g in app.registered_groups}


def _plug_in(argv: list[str]) -> None:
    """Command groups from other packages (the lab's, where its extra is installed), found
    through their entry points: only where the command line may need one (reading every
    package's metadata costs more than the rest of a start-up)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first in _builtin():
        return
    from interlock import plugins

    for name, group in plugins.offered(plugins.CLI):
        if name not in _builtin():  # once (main may run again in one process: tests)
            app.add_typer(group, name=name)


def main() -> None:
    err = console(stderr=True)
    _plug_in(sys.argv[1:])
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except InterlockError as e:
        err.print("[red]error:[/red] ", end="", highlight=False)
        err.print(str(e), markup=False, highlight=False)
        sys.exit(e.code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors: typer's own (bundled) click's
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {e.format_message()}", markup=False, highlight=False)
        sys.exit(e.exit_code)
