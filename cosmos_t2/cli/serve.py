"""`cosmos-t2 serve`: the per-GPU server behind `infer --server`, and the client side of `infer --server`.

The server's side of a job is `service.request.InferService`. The client resolves every path of the job
in its own folder before it sends it (the server never changes folder) and sends its command line for the
sidecar; the job's events come back and are printed by `infer`'s printer, with the paths shown as the
user wrote them (`AsGiven`), so a Snakemake log reads as if `infer` had run there.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cosmos_t2.cli.app import _state, app, positive
from cosmos_t2.cli.infer_job import print_event
from cosmos_t2.job.progress import JobEvent
from cosmos_t2.service.address import Address, server_address
from cosmos_t2.service.client import request, submit
from cosmos_t2.service.serve import serve as serve_requests

if TYPE_CHECKING:
    from cosmos_t2.service.infer import InferArgs
    from cosmos_t2.service.request import InferService

DEFAULT_IDLE_S = 600.0


@dataclass(frozen=True)
class AsGiven:
    """The job's absolute paths shown as the user wrote them: `-o out` prints `out/a.json`, as `infer` does.

    `pairs`: (absolute, as given) for each relative path of the command line, the longest first."""

    pairs: tuple[tuple[Path, Path], ...]
    cwd: Path

    @classmethod
    def of(cls, given: InferArgs, sent: InferArgs, cwd: Path) -> AsGiven:
        from cosmos_t2.service.infer import PATH_FIELDS

        pairs = {(s, g) for g, s in zip(given.jobs, sent.jobs, strict=True) if not g.is_absolute()}
        for g, s in [(getattr(given, name), getattr(sent, name)) for name in PATH_FIELDS] + [
            (given.run.compile_cache, sent.run.compile_cache)
        ]:
            if g is not None and not g.is_absolute():
                pairs.add((s, g))
        return cls(tuple(sorted(pairs, key=lambda pair: -len(str(pair[0])))), cwd)

    def path(self, text: str) -> str:
        """An output path as `infer` prints it: under a folder given relative, relative again."""
        path = Path(text)
        for absolute, given in self.pairs:
            if path.is_relative_to(absolute):
                return str(given / path.relative_to(absolute))
        return text

    def text(self, text: str) -> str:
        """A line with each absolute path of the command line shown as given. Not a path that is the
        client's folder itself (`-o .`): the job's own absolute paths start with it too."""
        for absolute, given in self.pairs:
            if absolute != self.cwd:  # a whole name: `/x/out` is not the start of `/x/out2`
                pattern = re.escape(str(absolute)) + r"(?=/|[^\w.\-]|$)"
                text = re.sub(pattern, lambda match, given=given: str(given), text)
        return text

    def event(self, event: JobEvent) -> JobEvent:
        shown = self.path(event.text) if event.kind == "output" else self.text(event.text)
        return dataclasses.replace(event, text=shown)


def infer_on_server(args: InferArgs, *, idle_timeout: float) -> int:
    """Run `args` on this environment's server (started if none answers); the job's exit code."""
    from cosmos_t2.service.request import InferRequest

    cwd = Path.cwd()
    sent = args.resolved(cwd)
    shown = AsGiven.of(args, sent, cwd)
    payload = InferRequest(args=sent, argv=list(sys.argv), debug=_state["debug"])
    return submit(server_address(), payload, server_args=["--idle-timeout", str(idle_timeout)],
                  on_event=lambda event: print_event(shown.event(event)))  # fmt: skip


@app.command()
def serve(
    socket: Annotated[
        Path | None,
        typer.Option("--socket", help="Listen here (default: the address `infer --server` computes here)."),
    ] = None,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout", help="Exit after this many seconds without a request.", callback=positive
        ),
    ] = DEFAULT_IDLE_S,
    status: Annotated[
        bool, typer.Option("--status", help="Print this environment's server's state.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Ask this environment's server to exit.")] = False,
) -> None:
    """Keep models loaded for `infer --server` jobs; `infer --server` starts it, so you rarely run this.

    One server per user, host, visible GPUs, SLURM allocation, Python and cosmos-t2 source: a code change
    gets a new one. It runs one job at a time and exits after --idle-timeout seconds without a job. Its
    log is beside its socket (--status prints both)."""
    address = Address(socket) if socket is not None else server_address()
    if status or stop:
        answer = request(address, "stop" if stop else "status")
        info = {"socket": str(address.socket), "log": str(address.log), "running": answer is not None}
        typer.echo(json.dumps({**info, **(answer or {})}))
        return
    # SIGTERM ends the loop through its cleanup (the socket file is removed, the lock released)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from cosmos_t2.service.request import InferService

    service = InferService()
    serve_requests(address, service, service.status, idle_timeout=idle_timeout, log=_log(service))


def _log(service: InferService) -> Any:
    def log(line: str) -> None:
        builds = ", ".join(f"{k} {v}" for k, v in service.pool.builds.items())
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line} (built: {builds})", flush=True)

    return log
