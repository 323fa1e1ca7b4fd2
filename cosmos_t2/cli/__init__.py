"""The `cosmos-t2` command line. Commands are thin: parse, call one library function, print.

Each command imports its library inside its body, so that `cosmos-t2 --help` and `validate` start
without loading torch. `app` holds the shared options; the commands live in `stages` (the workflow's
stages), `jobs` (infer, render, bench), `models` (fetch, check) and `serve` (the server behind
`infer`, `render` and `encode-prompt --server`), registered on app by importing them.
"""

from __future__ import annotations

import sys
import warnings

from cosmos_t2.cli import jobs, models, serve, stages  # noqa: F401  (importing them registers their commands)
from cosmos_t2.cli.app import _state, app, print_error, replay_warnings
from cosmos_t2.errors import CosmosError, error_line
from cosmos_t2.reproducible import pin_for_command

__all__ = ["app", "main"]


def main() -> None:
    """Entry point that turns CosmosError and OSError into one red line and exit code 2.

    Warnings (torch's, transformers', ours) are held until the command ends: shown after a success,
    dropped after a failure, so the error line is the one thing a failed command prints (--debug shows
    them and the traceback).
    """
    pin_for_command(sys.argv)  # before torch computes anything: the same bytes on any x86-64 CPU
    held: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as held:
            app()
    except (CosmosError, OSError) as exc:
        if _state["debug"]:
            replay_warnings(held)
            raise
        print_error(error_line(exc))
        sys.exit(2)
    except SystemExit:
        replay_warnings(held)
        raise
