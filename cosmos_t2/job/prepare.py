"""A job's first phase: everything that can fail on user input, before any model is built.

The device and dtype, the acceleration (set on the process before the text encoder's first matmul), the
memory plan (its line opens the job), the destination, the style reference, the prompt embeddings file,
the model folder, guided generation with the distilled model, the prompt guardrail; then the inputs,
read now or (`Acceleration.prefetch_inputs`, on CUDA) on a thread while the models load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.destination import check_destination, check_free_space
from cosmos_t2.distributed.context import ParallelContext
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import plan_chunks
from cosmos_t2.job.conditioning import check_prompt_embeddings
from cosmos_t2.job.guardrails import Guardrails, load_guardrails
from cosmos_t2.job.guided import refuse_distilled
from cosmos_t2.job.inputs import JobInputs, load_inputs
from cosmos_t2.job.output import expected_output_bytes, output_names
from cosmos_t2.job.progress import JobProgress
from cosmos_t2.job.record import StageTimer
from cosmos_t2.job.settings import Settings, effective_spec
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model.image_context import check_reference, reference_image
from cosmos_t2.runtime.acceleration import Acceleration, Background, prepare_process, resolve_acceleration
from cosmos_t2.runtime.memory_choice import Choice
from cosmos_t2.runtime.pool import ModelPool
from cosmos_t2.runtime.residency import plan_memory
from cosmos_t2.weights.locate import ModelFiles, locate_models

if TYPE_CHECKING:
    from cosmos_t2.job.run import RunOptions


@dataclass(frozen=True)
class JobInputsRead:
    """The inputs and the style reference image (None without one)."""

    inputs: JobInputs
    reference: Any


@dataclass(frozen=True)
class Prepared:
    """What the checks established, for the load phase: nothing here is a built model."""

    options: RunOptions
    settings: Settings
    started: float  # the job's start (time.time()), for the record
    device: torch.device
    dtype: torch.dtype
    acceleration: Acceleration
    pool: ModelPool
    memory: Choice
    files: ModelFiles
    given_embeddings: Any  # the checked --prompt-embeddings, or None
    guard: Guardrails | None
    timer: StageTimer
    progress: JobProgress
    pending: Background[JobInputsRead] | None  # the inputs being read on a thread
    inputs_read: JobInputsRead | None  # the inputs, when read here (no prefetch)

    @property
    def spec(self) -> Spec:
        return self.settings.spec

    @property
    def parallel(self) -> ParallelContext | None:
        return self.options.parallel

    @property
    def is_main(self) -> bool:
        return self.options.parallel is None or self.options.parallel.is_main


def job_device(options: RunOptions) -> tuple[torch.device, torch.dtype]:
    ctx = options.parallel
    device = torch.device(ctx.device if ctx is not None else options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CosmosError("--device cuda but no CUDA device is visible", key="device")
    return device, options.dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)


def prepare(spec: Spec, options: RunOptions, progress: JobProgress) -> Prepared:
    """Run every check of the job, in the order the user meets them; start reading the inputs."""
    started = time.time()
    settings = effective_spec(spec, options.tiny)
    spec = settings.spec
    device, dtype = job_device(options)
    timer = StageTimer(device, progress)
    acc = options.acceleration or resolve_acceleration(device)
    prepare_process(acc)  # before the text encoder's first matmul: cuBLAS's workspace is fixed then
    pool = options.pool if options.pool is not None else ModelPool()
    # The memory plan first (its line opens the job): the spec and the input's header are all it reads.
    memory = plan_memory(
        spec, device=device, dtype=dtype, offload=options.offload, memory_cap_gib=options.memory_cap_gib,
        gpus=1 if options.parallel is None else options.parallel.world_size,
        text_encoder=options.prompt_embeddings is None, tiny=options.tiny, compiled=acc.compile,
        cuda_graphs=acc.compile and acc.compile_mode in ("reduce-overhead", "max-autotune"),
    )  # fmt: skip
    progress.note(memory.line())
    main = options.parallel is None or options.parallel.is_main
    with timer.stage("validate"):  # nothing below builds a model before these pass
        files, given_embeddings = _check_job(spec, options, main)
    guard: Guardrails | None = None
    if options.guardrails and main:  # rank 0 alone checks, as upstream
        with timer.stage("guardrail_prompt"):  # a blocked prompt stops before any model is built
            guard = load_guardrails(device)
            guard.check_prompts(spec)

    def read() -> JobInputsRead:
        return read_inputs(spec, options, device, main)

    pending = Background(read, device) if acc.prefetch_inputs else None
    inputs_read = None
    if pending is None:
        with timer.stage("inputs"):
            inputs_read = read()
    return Prepared(
        options, settings, started, device, dtype, acc, pool, memory, files, given_embeddings, guard,
        timer, progress, pending, inputs_read,
    )  # fmt: skip


def _check_job(spec: Spec, options: RunOptions, main: bool) -> tuple[ModelFiles, Any]:
    """The destination, the style reference, the prompt embeddings, the model folder, guided generation."""
    if main:  # only rank 0 writes
        check_destination(options.out_dir, output_names(spec, options.latents_only))
    check_reference(spec.image_context_path, spec.context_frame_index)
    given_embeddings = None
    if options.prompt_embeddings is not None:
        given_embeddings = check_prompt_embeddings(options.prompt_embeddings, spec, options.tiny)
    files = locate_models(
        options.model_dir,
        list(spec.controls),
        tiny=options.tiny,
        need_text_encoder=options.prompt_embeddings is None,
        need_image_encoder=spec.image_context_path is not None or spec.context_frame_index is not None,
        prefer_distilled=options.prefer_distilled,
    )
    refuse_distilled(spec, files.distilled)
    return files, given_embeddings


def read_inputs(spec: Spec, options: RunOptions, device: torch.device, main: bool) -> JobInputsRead:
    """The input video, controls and masks, checked; the room for the outputs; the style reference."""
    inputs = load_inputs(
        spec, controls_dir=options.controls_dir, masks_dir=options.masks_dir, device=str(device),
        models=ModelPaths.from_env(model_dir=options.model_dir, has_options=False),  # infer: no --*-model-dir
    )  # fmt: skip
    if main:  # room for the outputs, now that the frame count is known
        planned = plan_chunks(inputs.num_frames, spec.num_video_frames_per_chunk, spec.num_conditional_frames)
        check_free_space(options.out_dir, expected_output_bytes(spec, inputs, planned, options.latents_only))
    # Read (and so check) the style reference before the text encoder and the network are built.
    reference = reference_image(
        spec.image_context_path, spec.video_path, spec.context_frame_index, inputs.size
    )
    return JobInputsRead(inputs, reference)
