"""The `cosmos-t2` command line. Commands are thin: parse, call one library function, print."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from cosmos_t2 import __version__
from cosmos_t2.errors import CosmosError

app = typer.Typer(
    name="cosmos-t2",
    help="Cosmos-Transfer2.5 from a spec file to a finished video.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the version of cosmos-t2."""
    typer.echo(__version__)


# --- commands added by each stage go below; keep each one thin -------------------------------


def main() -> None:
    """Entry point that turns CosmosError into one red line and exit code 2."""
    try:
        app()
    except CosmosError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
