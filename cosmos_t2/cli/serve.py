"""`cosmos-t2 serve`: the per-GPU server behind `infer --server`, and the client side of `infer --server`.

The server runs each job through `infer_job.run_infer`, the function `infer` runs, with one `ModelPool` for
its whole life: the network is built and compiled once for every job that shares a model set. The job's
stdout and stderr (its progress lines, its output paths, its error line) go back to the client, which
prints them and exits with the job's code, so a Snakemake log reads as if `infer` had run there.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cosmos_t2.cli.app import _state, app, positive, print_error, replay_warnings
from cosmos_t2.cli.infer_job import InferArgs, run_infer
from cosmos_t2.errors import CosmosError, error_line
from cosmos_t2.service.serve import Address, Emit, LineWriter, request, server_address, submit
from cosmos_t2.service.serve import serve as serve_requests

DEFAULT_IDLE_S = 600.0


@dataclass
class InferRequest:
    """A job as `infer` parsed it, and where it was asked for (its paths are relative to `cwd`)."""

    args: InferArgs
    cwd: str
    argv: list[str]  # the client's, for the sidecar's provenance (the command that made the file)
    debug: bool = False


def infer_on_server(args: InferArgs, *, idle_timeout: float) -> int:
    """Run `args` on this environment's server (started if none answers); the job's exit code."""
    payload = InferRequest(args=args, cwd=os.getcwd(), argv=list(sys.argv), debug=_state["debug"])
    return submit(server_address(), payload, server_args=["--idle-timeout", str(idle_timeout)])


class InferService:
    """The server's side of a job: `run_infer` on the one pool, its output streamed to the client."""

    def __init__(self) -> None:
        from cosmos_t2.runtime.pool import ModelPool

        self.pool = ModelPool()
        self.jobs = {"done": 0, "failed": 0}
        self.started = time.time()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "jobs": dict(self.jobs), "builds": dict(self.pool.builds),
                "up_s": round(time.time() - self.started, 1)}  # fmt: skip

    def __call__(self, payload: InferRequest, emit: Emit) -> int:
        out, err = LineWriter(emit, "out"), LineWriter(emit, "err")
        first = sum(self.jobs.values()) == 0  # later jobs did not pay the interpreter's start
        # warnings as `main` shows them: after a success, none after a failure
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as held:  # fmt: skip
            code, argv = 1, sys.argv  # 1 until it succeeds: a job its client abandoned counts as failed
            try:
                os.chdir(payload.cwd)
                sys.argv = payload.argv  # one job at a time: the process's argv is the job's while it runs
                run_infer(payload.args, pool=self.pool, first_in_process=first)
                code = 0
            except (CosmosError, OSError) as exc:
                if payload.debug:
                    traceback.print_exc()
                print_error(error_line(exc))
                code = 2
            except Exception:  # as an uncaught error in `infer`: the traceback and exit code 1
                traceback.print_exc()
                code = 1
            finally:
                sys.argv = argv
                self.jobs["done" if code == 0 else "failed"] += 1
                _release_memory(payload.args)
            if code == 0:
                replay_warnings(held)
            out.flush()
            err.flush()
        return code


def _release_memory(args: InferArgs) -> None:
    """Between jobs the server holds its models and nothing else: the allocator's cache goes back."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    torch.cuda.empty_cache()
    if args.memory_cap is not None:  # a job's cap must not hold the next one
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(1.0, index)


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
    service = InferService()
    serve_requests(address, service, service.status, idle_timeout=idle_timeout, log=_log(service))


def _log(service: InferService) -> Any:
    def log(line: str) -> None:
        builds = ", ".join(f"{k} {v}" for k, v in service.pool.builds.items())
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line} (built: {builds})", flush=True)

    return log
