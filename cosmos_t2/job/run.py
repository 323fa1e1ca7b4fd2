"""spec -> video: `run_job` runs a job's four phases in order, each in its own module: `job.prepare` (the
memory plan, every check, the prompt guardrail, the inputs' prefetch), `job.load` (text embeddings, the
network and the VAE), `job.generate` (the chunks) and `job.publish` (the outputs and the sidecar).

`run_job(spec, options)` runs one job as the official `ControlVideo2WorldInference.generate_img2world`
does: chunk by chunk (`chunking.plan_chunks`), each chunk conditioned on the last frames the previous one
generated, per-chunk seeds derived as upstream (`sampling.chunk_seeds`), the sampler of `sampling.sample`
(or the distilled model's, `distilled.sample_distilled`), VAE decode per chunk, stitching, optional
side-by-side panels (controls | input | output, as upstream's show_control_condition / show_input), and a
resize back to the input size. Stages are timed; the sidecar JSON records them with the resolved spec.

Every check that can fail on user input runs before any model is built: the model directory
(`weights.locate.locate_models`), frame counts of controls and masks and the guided-generation mask
(`job.inputs.load_inputs`), chunk length, the prompt embeddings file; guided generation with the
distilled model (`cosmos_t2.job.guided`: upstream's distilled sampler ignores it, so it is refused here).
On CUDA (`Acceleration.prefetch_inputs`) the inputs are read on a thread while the models load, so their
checks end the job after the load but still before any step.
The output folder, its names (before anything) and free space (once the frame count is known, before
any step) are checked (`destination`). Each chunk's sampler runs under the NaN/Inf guard
(`sampling.guard`), and the outputs are published together, the sidecar last (`atomic.OutputSet`).

Tiny mode (`--tiny`): the tiny network family with seeded random weights, resolution "tiny" (64 px high)
and 17-frame chunks (5 latent frames) unless the spec sets another chunk length, so a CPU run takes
seconds. Every output says "tiny random-weight model".
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cosmos_t2.distributed.context import ParallelContext, parallel_job
from cosmos_t2.distributed.launch import under_torchrun
from cosmos_t2.job.generate import condition, diffuse_chunks
from cosmos_t2.job.load import load
from cosmos_t2.job.prepare import prepare
from cosmos_t2.job.progress import EventSink, JobProgress
from cosmos_t2.job.publish import DISTILLED_LABEL, FULL_LABEL, publish
from cosmos_t2.job.settings import (
    OFFICIAL_FRAMES_PER_CHUNK,
    TINY_FRAMES_PER_CHUNK,
    Settings,
    distilled_settings,
    effective_spec,
)
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.runtime.acceleration import Acceleration
from cosmos_t2.runtime.pool import ModelPool

__all__ = [
    "DISTILLED_LABEL", "FULL_LABEL", "OFFICIAL_FRAMES_PER_CHUNK", "TINY_FRAMES_PER_CHUNK", "JobResult",
    "RunOptions", "Settings", "distilled_settings", "effective_spec", "run_job", "run_on_ranks",
]  # fmt: skip


@dataclass
class RunOptions:
    """How to run a job (the spec says what to make)."""

    out_dir: Path
    device: str = "cpu"
    dtype: torch.dtype | None = None  # None: bf16 on CUDA, fp32 on CPU
    tiny: bool = False
    model_dir: Path | None = None
    controls_dir: Path | None = None
    masks_dir: Path | None = None
    prompt_embeddings: Path | None = None
    latents_only: bool = False
    progress: bool | str = True  # True/"auto": a bar on a terminal, else "lines"; "bar", "lines"; False: off
    guardrails: bool = False  # NVIDIA's cosmos-guardrail on the prompts and the output video
    parallel: ParallelContext | None = None  # this rank's, under torchrun; None: one process
    acceleration: Acceleration | None = None  # None: resolve_acceleration(device) (compiled on CUDA)
    pool: ModelPool | None = None  # models kept between the jobs of one process; None: this job's own
    offload: str = "auto"  # auto | none | model | blocks (runtime.memory)
    memory_cap_gib: float | None = None  # plan for (and on CUDA, hold the process to) this much memory
    first_in_process: bool = True  # False for a batch's later jobs: the process's start was paid before
    # What the closing "done" line names instead of the output path: `bench --e2e` writes into a temporary
    # folder it deletes, and a line naming a path that is gone by the time it is read misleads.
    output_note: str | None = None
    # --distilled: the model folder's <control>_distilled checkpoint before its full one
    prefer_distilled: bool = False
    # Where the job's lines go (the CLI prints them, the server streams them); None: printed on stderr.
    events: EventSink | None = None
    # The command line the sidecar's provenance records: the server's job records its client's.
    argv: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class JobResult:
    sidecar: Path | None  # None on ranks other than 0 (they write nothing)
    video: Path | None
    latents: Path | None
    num_frames: int
    fps: float
    seconds: dict[str, float] = field(default_factory=dict)


def run_job(spec: Spec, options: RunOptions) -> JobResult:
    """Run one job; rank 0 writes DIR/<name>.mp4 (or .latents.safetensors) and DIR/<name>.json."""
    mode = options.progress if _is_main(options.parallel) else False
    with JobProgress(spec.name, mode, events=options.events) as progress:
        return _run_job(spec, options, progress)


def _run_job(spec: Spec, options: RunOptions, progress: JobProgress) -> JobResult:
    job = prepare(spec, options, progress)
    loaded = load(job)
    generation = condition(job, loaded)
    made = diffuse_chunks(job, loaded, generation)
    inputs = loaded.inputs_read.inputs
    if not job.is_main:
        return JobResult(None, None, None, inputs.num_frames, inputs.fps, job.timer.rounded())
    done = publish(job, loaded, generation, made)
    shown = done.paths.get("video") or done.paths.get("latents")
    progress.summary(
        done.record.to_json(), Path(options.output_note) if options.output_note and shown else shown
    )
    return JobResult(
        done.sidecar, done.paths.get("video"), done.paths.get("latents"), inputs.num_frames, inputs.fps,
        job.timer.rounded(),
    )  # fmt: skip


def _is_main(ctx: ParallelContext | None) -> bool:
    return ctx is None or ctx.is_main


def run_on_ranks(spec: Spec, options: RunOptions) -> JobResult:
    """`run_job` in this process, or, inside a torchrun job (`--gpus N`), as one rank of it: the
    network's frames split over the ranks and, with an even count and guidance, the two CFG passes on
    the two halves (`distributed.net.ParallelNet`, `distributed.net.parallel_velocity`). Rank 0 alone writes."""
    import os

    if not under_torchrun():
        return run_job(spec, options)
    world = int(os.environ["WORLD_SIZE"])
    with parallel_job(options.device, cfg_parallel=world % 2 == 0 and spec.guidance != 0) as ctx:
        return run_job(
            spec, dataclasses.replace(options, parallel=ctx, progress=options.progress and ctx.is_main)
        )
