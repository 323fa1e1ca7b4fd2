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

import contextlib
import gc
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
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
    """The server's side of a request: run on the one pool, its events streamed to the client.

    The server runs requests on threads of their own (`service.serve`), and the pool is for one user at a
    time: a request holds `gpu` for all its work (infer, encode-prompt) or, a render, for its decode only,
    and gives it back after the memory release that ends its GPU work, so a render's mp4 write runs while
    the next job's steps do. The counters have a lock of their own, so `status` answers while jobs run."""

    def __init__(self) -> None:
        from cosmos_t2.runtime.pool import ModelPool  # here: torch loads where it runs

        self.pool: ModelPool = ModelPool()
        self.encoders = PromptEncoders(self.pool)
        self.gpu = threading.Lock()  # held by the one request whose work is on the device (the pool's user)
        self._counts = threading.Lock()
        self.jobs = {"done": 0, "failed": 0}
        # requests by kind, whatever their outcome
        self.served = {"infer": 0, "render": 0, "encode-prompt": 0}
        self.started = time.time()
        self._warnings = ThreadWarnings()

    def status(self) -> dict[str, Any]:
        with self._counts:
            jobs, served, builds = dict(self.jobs), dict(self.served), dict(self.pool.builds)
        return {"pid": os.getpid(), "jobs": jobs, "served": served, "builds": builds,
                "up_s": round(time.time() - self.started, 1)}  # fmt: skip

    def _run(self, request: Request, emit: Emit, *, first: bool) -> None:
        if isinstance(request, PromptRequest):
            with GpuTurn(self.gpu, request.memory_cap_gib):
                run_encode_prompt(request.args, events=emit, encoders=self.encoders)
            return
        # a 7B encoder on the GPU is no part of a diffuse or render request's memory plan
        turn = GpuTurn(self.gpu, request.memory_cap_gib, before=self.encoders.release_gpu)
        if isinstance(request, RenderRequest):  # the GPU for the decode; the mp4 write after it
            run_render(request.args, events=emit, pool=self.pool, gpu=turn)
        elif isinstance(request, InferRequest):
            from cosmos_t2.service.infer import run_infer  # here: torch loads where it runs

            with turn:  # lines, never a bar: no terminal here is the client's
                run_infer(request.args, events=emit, argv=request.argv, pool=self.pool, first_in_process=first,
                          progress="lines")  # fmt: skip
        else:  # a client of another cosmos-t2 would get another server (the address hashes the code)
            raise CosmosError(f"this server serves no {type(request).__name__}")

    def __call__(self, request: Request, emit: Emit) -> int:
        with self._counts:
            first = sum(self.served.values()) == 0  # later requests did not pay the interpreter's start
            self.served[request.kind] = self.served.get(request.kind, 0) + 1
        # warnings as `main` shows them: after a success, none after a failure
        with self._warnings.record() as held:
            code = 1  # until it succeeds: a job its client abandoned counts as failed
            try:
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
                with self._counts:
                    self.jobs["done" if code == 0 else "failed"] += 1
        if code == 0:
            for w in held:
                text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                emit(JobEvent("warning", text))
        return code


class GpuTurn:
    """A request's hold on the GPU (`lock`), taken as often as the request needs it: `before` runs first in
    each turn, and the request's memory goes back (`_release_memory`) before the next holder starts."""

    def __init__(self, lock: threading.Lock, memory_cap_gib: float | None,
                 before: Callable[[], object] | None = None) -> None:  # fmt: skip
        self.lock, self.memory_cap_gib, self.before = lock, memory_cap_gib, before

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            if self.before is not None:
                self.before()
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            _release_memory(self.memory_cap_gib)
        finally:
            self.lock.release()


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


class ThreadWarnings:
    """Each request's warnings, held apart while requests run on several threads.

    `warnings.catch_warnings` swaps process-wide state on the way in and restores it on the way out, so two
    requests on two threads would restore each other's and lose or cross their warnings. Here one hook,
    installed on first use for the server's life, files a warning under the request of the thread that
    raised it; a warning from any other thread goes where it went before."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._install = threading.Lock()
        self._previous: Any = None

    @contextlib.contextmanager
    def record(self) -> Iterator[list[warnings.WarningMessage]]:
        with self._install:
            if self._previous is None:
                self._previous = warnings.showwarning
                warnings.showwarning = self._show
            # as catch_warnings does: a "once per place" warning is shown again to each request
            reset = getattr(warnings, "_filters_mutated", None)
            if reset is not None:
                reset()
        held: list[warnings.WarningMessage] = []
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None

    def _show(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: Any = None, line: str | None = None) -> None:  # fmt: skip
        held = getattr(self._local, "held", None)
        if held is None:
            self._previous(message, category, filename, lineno, file, line)
        else:
            held.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
