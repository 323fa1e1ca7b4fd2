"""How `cosmos-t2 infer` shows a job: the printer of its `JobEvent`s, for a job run here or on a server.

The job itself is `service.infer.run_infer`; it reports through events, and this is the one place that
turns them into what the user reads (plain lines, the red "failed:" and "error:" lines), so an `infer`
run in its own process and one whose events a server streamed back print the same.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cosmos_t2.cli.app import err_console, print_error
from cosmos_t2.job.progress import JobEvent

if TYPE_CHECKING:
    from cosmos_t2.service.infer import InferArgs


def print_event(event: JobEvent) -> None:
    """One event as `infer` prints it: results on stdout, the job's log on stderr."""
    if event.kind == "failed":
        err_console.print(f"[bold red]failed:[/] {escape(event.text)}", highlight=False, soft_wrap=True)
    elif event.kind == "error":
        print_error(event.text)
    elif event.kind in ("warning", "traceback"):  # already formatted, newline included
        sys.stderr.write(event.text)
        sys.stderr.flush()
    elif event.stream == "out":
        typer.echo(event.text)
    else:
        print(event.text, file=sys.stderr, flush=True)


def infer_here(args: InferArgs) -> None:
    """`args`' job or batch in this process, printed as it goes (its error is raised to `main`)."""
    from cosmos_t2.service.infer import run_infer

    run_infer(args, events=print_event, argv=list(sys.argv))
