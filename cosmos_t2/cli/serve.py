"""`cosmos-t2 serve`: the per-GPU server behind `infer`, `render` and `encode-prompt --server`; their client side.

The server's side of a request is `service.request.InferService`. The client resolves every path of the
request in its own folder before it sends it (the server never changes folder), and an infer job sends its
command line for the sidecar; the request's events come back and are printed by `infer`'s printer, with the
paths shown as the user wrote them (`AsGiven`), so a Snakemake log reads as if the command had run there.
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
    from cosmos_t2.service.prompt import PromptArgs
    from cosmos_t2.service.render import RenderArgs
    from cosmos_t2.service.request import InferService

DEFAULT_IDLE_S = 600.0

# A served command's two options (infer, render, encode-prompt).
ServerOption = Annotated[
    bool,
    typer.Option(
        "--server/--no-server",
        is_eager=True,  # before --device, whose check it skips (app._device_option)
        help="Hand the job to this GPU's cosmos-t2 server (started if none answers), which keeps models "
        "loaded (and compiled) between jobs; one-GPU jobs only.",
    ),
]
ServerIdle = Annotated[
    float,
    typer.Option(
        "--server-idle",
        help="Seconds a server this starts waits for a job before it exits.",
        callback=positive,
    ),
]


@dataclass(frozen=True)
class AsGiven:
    """The job's absolute paths shown as the user wrote them: `-o out` prints `out/a.json`, as `infer` does.

    `pairs`: (absolute, as given) for each relative path of the command line, the longest first."""

    pairs: tuple[tuple[Path, Path], ...]
    cwd: Path

    @classmethod
    def of(cls, given: InferArgs, sent: InferArgs, cwd: Path) -> AsGiven:
        from cosmos_t2.service.infer import PATH_FIELDS

        fields = [(getattr(given, name), getattr(sent, name)) for name in PATH_FIELDS]
        compile_cache = [(given.run.compile_cache, sent.run.compile_cache)]
        return cls.of_pairs([*zip(given.jobs, sent.jobs, strict=True), *fields, *compile_cache], cwd)

    @classmethod
    def of_pairs(cls, pairs: list[tuple[Path | None, Path | None]], cwd: Path) -> AsGiven:
        """From (as given, as sent) pairs: the relative ones are shown as given."""
        shown = {(s, g) for g, s in pairs if g is not None and s is not None and not g.is_absolute()}
        return cls(tuple(sorted(shown, key=lambda pair: -len(str(pair[0])))), cwd)

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
    return _submit(payload, shown, idle_timeout)


def render_on_server(args: RenderArgs, *, idle_timeout: float) -> int:
    """Render `args` on this environment's server (started if none answers); the render's exit code."""
    from cosmos_t2.service.request import RenderRequest

    cwd = Path.cwd()
    sent = args.resolved(cwd)
    pairs = [(args.latents, sent.latents), (args.out, sent.out), (args.model_dir, sent.model_dir)]
    return _submit(
        RenderRequest(args=sent, debug=_state["debug"]), AsGiven.of_pairs(pairs, cwd), idle_timeout
    )


def prompt_on_server(args: PromptArgs, *, idle_timeout: float) -> int:
    """Encode `args`' prompts on this environment's server (started if none answers); the exit code."""
    from cosmos_t2.service.request import PromptRequest

    cwd = Path.cwd()
    sent = args.resolved(cwd)
    pairs = [(args.job, sent.job), (args.out, sent.out), (args.text_encoder_dir, sent.text_encoder_dir),
             (args.cache_dir, sent.cache_dir)]  # fmt: skip
    return _submit(
        PromptRequest(args=sent, debug=_state["debug"]), AsGiven.of_pairs(pairs, cwd), idle_timeout
    )


def _submit(payload: Any, shown: AsGiven, idle_timeout: float) -> int:
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
    """Keep models loaded for `infer`, `render` and `encode-prompt --server`, which start it: rarely run by hand.

    One server per user, host, visible GPUs, SLURM allocation, Python and cosmos-t2 source: a code change
    gets a new one. It runs two jobs at a time at most (one on the GPU, one writing its mp4) and exits after
    --idle-timeout seconds without a job. Its log is beside its socket (--status prints both)."""
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
