"""The server's side of a served stage: the requests a client sends, and what runs them.

`InferService` runs each request with one `ModelPool` for the server's whole life: an `infer --server` job
through `service.infer.run_infer`, the function `infer` runs (the network is built and compiled once for
every job that shares a model set), a `render --server` through `service.render.run_render`, with the
VAE those jobs use, and an `encode-prompt --server` through `service.prompt.run_encode_prompt`, with the
text encoder kept for the next prompt (`service.prompt.PromptEncoders`). The request's events (its
progress lines, its output paths, its warnings, its error line) go back to the client as they happen,
which prints them and exits with the request's code, so a Snakemake log reads as if the command had run
there. The request's paths are absolute (the client resolved
them in its own folder) and an infer job carries the client's command line for the sidecar: nothing here
depends on the server's folder or its own command line.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cosmos_t2.errors import CosmosError, error_line
from cosmos_t2.job.progress import JobEvent
from cosmos_t2.service.prompt import PromptArgs, PromptEncoders, run_encode_prompt
from cosmos_t2.service.render import RenderArgs, run_render
from cosmos_t2.service.serve import Emit

if TYPE_CHECKING:  # torch, imported where a job runs: a render's or a prompt's client does without it
    from cosmos_t2.runtime.pool import ModelPool
    from cosmos_t2.service.infer import InferArgs


@dataclass
class InferRequest:
    """A job as `infer` parsed it, its paths made absolute in the client's folder (`InferArgs.resolved`)."""

    args: InferArgs
    argv: list[str]  # the client's, for the sidecar's provenance (the command that made the file)
    debug: bool = False  # the client's --debug: a traceback with the error line
    kind: ClassVar[str] = "infer"

    @property
    def memory_cap_gib(self) -> float | None:
        return self.args.run.memory_cap_gib


@dataclass
class RenderRequest:
    """A `render` as parsed, its paths made absolute in the client's folder (`RenderArgs.resolved`)."""

    args: RenderArgs
    debug: bool = False
    kind: ClassVar[str] = "render"
    memory_cap_gib: ClassVar[None] = None


@dataclass
class PromptRequest:
    """An `encode-prompt` as parsed, its paths made absolute in the client's folder (`PromptArgs.resolved`)."""

    args: PromptArgs
    debug: bool = False
    kind: ClassVar[str] = "encode-prompt"
    memory_cap_gib: ClassVar[None] = None


Request = InferRequest | RenderRequest | PromptRequest


class InferService:
    """The server's side of a request: run on the one pool, its events streamed to the client."""

    def __init__(self) -> None:
        from cosmos_t2.runtime.pool import ModelPool  # here: torch loads where it runs

        self.pool: ModelPool = ModelPool()
        self.encoders = PromptEncoders(self.pool)
        self.jobs = {"done": 0, "failed": 0}
        # requests by kind, whatever their outcome
        self.served = {"infer": 0, "render": 0, "encode-prompt": 0}
        self.started = time.time()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "jobs": dict(self.jobs), "served": dict(self.served),
                "builds": dict(self.pool.builds), "up_s": round(time.time() - self.started, 1)}  # fmt: skip

    def _run(self, request: Request, emit: Emit, *, first: bool) -> None:
        if isinstance(request, PromptRequest):
            run_encode_prompt(request.args, events=emit, encoders=self.encoders)
            return
        self.encoders.release_gpu()  # a 7B encoder on the GPU is no part of this request's memory plan
        if isinstance(request, InferRequest):
            from cosmos_t2.service.infer import run_infer  # here: torch loads where it runs

            # lines, never a bar: no terminal here is the client's
            run_infer(request.args, events=emit, argv=request.argv, pool=self.pool, first_in_process=first,
                      progress="lines")  # fmt: skip
        elif isinstance(request, RenderRequest):
            run_render(request.args, events=emit, pool=self.pool)
        else:  # a client of another cosmos-t2 would get another server (the address hashes the code)
            raise CosmosError(f"this server serves no {type(request).__name__}")

    def __call__(self, request: Request, emit: Emit) -> int:
        first = sum(self.jobs.values()) == 0  # later jobs did not pay the interpreter's start
        # warnings as `main` shows them: after a success, none after a failure
        with warnings.catch_warnings(record=True) as held:
            code = 1  # until it succeeds: a job its client abandoned counts as failed
            try:
                self.served[request.kind] = self.served.get(request.kind, 0) + 1
                self._run(request, emit, first=first)
                code = 0
            except (CosmosError, OSError) as exc:
                if request.debug:
                    emit(JobEvent("traceback", traceback.format_exc()))
                emit(JobEvent("error", error_line(exc)))
                code = 2
            except Exception:  # as an uncaught error in `infer`: the traceback and exit code 1
                emit(JobEvent("traceback", traceback.format_exc()))
                code = 1
            finally:
                self.jobs["done" if code == 0 else "failed"] += 1
                _release_memory(request.memory_cap_gib)
        if code == 0:
            for w in held:
                text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                emit(JobEvent("warning", text))
        return code


def _release_memory(memory_cap_gib: float | None) -> None:
    """Between jobs the server holds its models and nothing else: the allocator's cache goes back."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    torch.cuda.empty_cache()
    if memory_cap_gib is not None:  # a job's cap must not hold the next one
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(1.0, index)
