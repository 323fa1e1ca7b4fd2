"""Where a running job is: the stage it is in, the diffusion step with an ETA, and a summary when done.

`JobProgress` listens to the job's `StageTimer` (every timed stage announces itself, so a new stage needs
no print of its own) and to the sampler's per-step callback. Two ways to show it:
- "bar": a rich bar on a terminal; its text names the stage ("VAE encode, chunk 1/2") and its clock runs
  from the stage's start; during the steps it shows the seconds per step and the time left for the job.
- "lines": one plain line per stage and a step line now and then, for logs (`--quiet`, stderr not a
  terminal, a Snakemake job's log file). Lines look like `[car_edge 12.3s] VAE encode, chunk 1/2`.
Both end with one summary line: name, output, total seconds, seconds per step and peak memory.

The lines go to the caller as `JobEvent`s through an `EventSink` where one is given (the CLI prints them,
the server streams them to its client); without one they are printed on the stream.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO

MODES = ("auto", "bar", "lines", "off")

EventKind = Literal["progress", "output", "message", "failed", "warning", "error", "traceback"]
STDOUT_KINDS = frozenset({"output", "message"})  # what a command prints as its result; the rest is its log


@dataclass(frozen=True)
class JobEvent:
    """One thing a running job (or a run of jobs) tells its caller, as text without markup.

    progress: a stage, step or summary line; output: a file it wrote; message: a batch's note on a job
    (skipped, redone); failed: a batch job that failed ("name: error"); warning: a formatted Python
    warning; error: the line of the error that ended the run; traceback: an unexpected error's."""

    kind: EventKind
    text: str

    @property
    def stream(self) -> Literal["out", "err"]:
        return "out" if self.kind in STDOUT_KINDS else "err"


EventSink = Callable[[JobEvent], None]

# Timer stage -> what the user is told. Stages not listed are announced by their timer name.
STAGE_LABELS = {
    "validate": "checking the spec and the model files",
    "inputs": "reading the input video, controls and masks",
    "guardrail_prompt": "guardrail on the prompt",
    "text": "prompt embeddings",
    "load_models": "building the network and the VAE",
    "image_context": "style reference",
    "vae_encode": "VAE encode",
    "diffusion": "diffusion steps",
    "vae_decode": "VAE decode",
    "guardrail_video": "guardrail on the video",
    "write": "writing outputs",
}
# In lines mode a step line is printed at the first and last step of a chunk, and in between when this
# share of the chunk's steps, or this many seconds, have passed since the last one.
STEP_LINE_FRACTION = 0.1
STEP_LINE_SECONDS = 30.0


def progress_mode(value: bool | str, stream: TextIO | None = None) -> str:
    """ "bar", "lines" or "off" from a RunOptions.progress value: True / "auto" means a bar on a terminal
    and lines otherwise, False means off."""
    if value is False:
        return "off"
    if value is True or value == "auto":
        stream = stream or sys.stderr
        return "bar" if stream.isatty() else "lines"
    if value not in MODES:
        raise ValueError(f"progress must be one of {MODES}, got {value!r}")
    return str(value)


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class JobProgress:
    """A job's progress display; a context manager (the bar lives while the job runs)."""

    def __init__(
        self,
        name: str,
        mode: bool | str = "auto",
        stream: TextIO | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.events = events
        self.mode = progress_mode(mode, self.stream)
        self.name = name
        self.started = time.perf_counter()
        self.chunk_index, self.chunks = 0, 1
        self._stage = ""
        self._diffusion_started = 0.0
        self._steps_done_before = 0  # steps of earlier chunks, for the job's ETA
        self._steps_in_chunk = 0
        self._last_line = (0, 0.0)  # (step, time) of the last step line
        self._bar: Any = None
        self._stage_task: Any = None  # open-ended, while a stage without steps runs
        self._step_task: Any = None  # the steps of the current chunk

    # --- context ----------------------------------------------------------------------------------

    def __enter__(self) -> JobProgress:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._bar = Progress(*columns, console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._stage_task = self._bar.add_task(self.name, total=None)
            self._step_task = self._bar.add_task(self.name, total=1, visible=False)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # --- what the job reports -------------------------------------------------------------------------

    def set_chunks(self, count: int) -> None:
        self.chunks = max(count, 1)

    def chunk_started(self, index: int, steps: int) -> None:
        self.chunk_index, self._steps_in_chunk = index, steps

    def note(self, text: str) -> None:
        """A line of its own about the job (the memory plan), in either mode."""
        if self.mode == "lines":
            self._line(text)
        elif self._bar is not None:
            self._bar.console.print(f"{self.name}: {text}", highlight=False, markup=False, soft_wrap=True)

    def stage_started(self, name: str) -> None:
        """Called by StageTimer when a stage begins."""
        label = STAGE_LABELS.get(name, name.replace("_", " "))
        if name in ("vae_encode", "diffusion", "vae_decode") and self.chunks > 1:
            label += f", chunk {self.chunk_index + 1}/{self.chunks}"
        self._stage = label
        if name == "diffusion":
            self._diffusion_started = time.perf_counter()
            self._last_line = (0, self._diffusion_started)
        if self.mode == "lines":
            self._line(label)
        elif self._bar is not None:  # each task's clock runs from its stage's start
            steps = name == "diffusion"
            shown, hidden = (
                (self._step_task, self._stage_task) if steps else (self._stage_task, self._step_task)
            )
            self._bar.update(hidden, visible=False)
            self._bar.reset(shown, description=f"{self.name}: {label}", visible=True)
            if steps:
                self._bar.update(shown, total=self._steps_in_chunk or None)

    def stage_finished(self, name: str, seconds: float) -> None:
        """Called by StageTimer when a stage ends."""
        if name == "diffusion":
            self._steps_done_before += self._steps_in_chunk

    def step(self, done: int, total: int) -> None:
        """The sampler's callback after each step of the current chunk."""
        self._steps_in_chunk = total
        now = time.perf_counter()
        per_step = (now - self._diffusion_started) / max(done, 1)
        job_steps = total * self.chunks
        left = per_step * (job_steps - self._steps_done_before - done)
        text = f"step {done}/{total}"
        if self.chunks > 1:
            text += f", chunk {self.chunk_index + 1}/{self.chunks}"
        text += f", {per_step:.2f} s/step"
        if left > 0:
            text += f", about {_duration(left)} of diffusion left"  # VAE and writing come on top
        if self.mode == "lines":
            last_step, last_time = self._last_line
            due = (
                done in (1, total)
                or done - last_step >= max(1, round(total * STEP_LINE_FRACTION))
                or now - last_time >= STEP_LINE_SECONDS
            )
            if due:
                self._last_line = (done, now)
                self._line(text)
        elif self._bar is not None:
            self._bar.update(self._step_task, description=f"{self.name}: {text}", total=total, completed=done)

    def summary(self, record: dict[str, Any], output: Path | None) -> str:
        """The one line that closes a finished job (also returned, for tests and callers)."""
        peak = record.get("peak_memory_gib") or {}
        memory = ", ".join(f"{v:.2f} GiB {k}" for k, v in peak.items()) or "n/a"
        per_step = record.get("seconds_per_step")
        line = (
            f"done {self.name}: {output if output is not None else '(no output)'} in "
            f"{record.get('total_s', 0.0):.1f} s, "
            f"{'n/a' if per_step is None else f'{per_step:.3f}'} s/step, peak {memory}"
        )
        if self.mode != "off":
            if self._bar is not None:
                self._bar.update(self._step_task, visible=False)
                self._bar.update(self._stage_task, description=f"{self.name}: done", visible=True)
                self._bar.stop()
                self._bar = None
            self._emit(line)
        return line

    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        self._emit(f"[{self.name} {elapsed:.1f}s] {text}")

    def _emit(self, line: str) -> None:
        if self.events is not None:
            self.events(JobEvent("progress", line))
        else:
            print(line, file=self.stream, flush=True)
