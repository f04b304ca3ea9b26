"""The `interlock` command."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from interlock import __version__
from interlock.commands import register
from interlock.conform.command import register as register_conform
from interlock.errors import InterlockError

app = typer.Typer(
    name="interlock",
    help="Hybrid infrastructure automation: the same SSH-ready, root-secured nodes everywhere.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)

try:
    from interlock_lab.cli import app as lab_app

    app.add_typer(lab_app, name="lab")
except ImportError:  # the lab is an extra: pip install 'interlock[lab]'
    pass


register(app)
register_conform(app)


@app.command()
def version() -> None:
    """Print interlock's version."""
    print(__version__)


def main() -> None:
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except InterlockError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
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
