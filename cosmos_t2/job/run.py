"""spec -> video: the one place that wires inputs, controls, masks, embeddings, VAE, sampler and outputs.

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
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.atomic import atomic_outputs
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.destination import check_destination, check_free_space
from cosmos_t2.distributed.context import ParallelContext, parallel_job
from cosmos_t2.distributed.launch import under_torchrun
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import carried_frames, plan_chunks
from cosmos_t2.job.conditioning import check_prompt_embeddings, image_context, prompt_embeddings
from cosmos_t2.job.diffuse import JobModels, diffuse_chunk, job_sampler
from cosmos_t2.job.guardrails import Guardrails, guard_panels, load_guardrails
from cosmos_t2.job.guided import refuse_distilled
from cosmos_t2.job.identity import environment, latents_sha256, video_identity
from cosmos_t2.job.inputs import JobInputs, load_inputs, to_uint8_frames
from cosmos_t2.job.output import (
    LatentPlan,
    expected_output_bytes,
    output_names,
    panels_for_chunk,
    write_outputs,
)
from cosmos_t2.job.progress import EventSink, JobProgress
from cosmos_t2.job.record import StageTimer, finish_record, job_record, write_json
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model.image_context import check_reference, reference_image
from cosmos_t2.runtime.acceleration import (
    Acceleration,
    Background,
    accelerated,
    prepare_process,
    resolve_acceleration,
)
from cosmos_t2.runtime.build import TINY_LABEL
from cosmos_t2.runtime.pool import ModelPool
from cosmos_t2.runtime.residency import Residency, decode_tile, plan_memory
from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS
from cosmos_t2.sampling.unipc import chunk_seeds
from cosmos_t2.weights.hashes import checkpoint_hashes, sha256_file
from cosmos_t2.weights.locate import locate_models

TINY_FRAMES_PER_CHUNK = 17
OFFICIAL_FRAMES_PER_CHUNK = 93
FULL_LABEL = "Cosmos-Transfer2.5-2B"
DISTILLED_LABEL = "Cosmos-Transfer2.5-2B distilled edge (4-step)"


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


@dataclass(frozen=True)
class Settings:
    """What the run does after tiny-mode and distilled-model adjustments."""

    spec: Spec  # the effective spec
    changed: dict[str, Any]  # key -> value as given, for keys the mode changed
    tiny: bool


def effective_spec(spec: Spec, tiny: bool) -> Settings:
    changed: dict[str, Any] = {}
    if tiny:
        updates: dict[str, Any] = {"resolution": "tiny"}
        if spec.num_video_frames_per_chunk == OFFICIAL_FRAMES_PER_CHUNK:
            updates["num_video_frames_per_chunk"] = TINY_FRAMES_PER_CHUNK
        changed = {k: getattr(spec, k) for k, v in updates.items() if getattr(spec, k) != v}
        spec = dataclasses.replace(spec, **updates)
    # The chunk rules (1 + 4k frames, more than the conditional frames) are the spec's
    # (`jobspec.job._chunk_frames`); tiny mode's 17 keeps them.
    return Settings(spec=spec, changed=changed, tiny=tiny)


def run_job(spec: Spec, options: RunOptions) -> JobResult:
    """Run one job; rank 0 writes DIR/<name>.mp4 (or .latents.safetensors) and DIR/<name>.json."""
    mode = options.progress if _is_main(options.parallel) else False
    with JobProgress(spec.name, mode, events=options.events) as progress:
        return _run_job(spec, options, progress)


def _run_job(spec: Spec, options: RunOptions, progress: JobProgress) -> JobResult:
    started = time.time()
    settings = effective_spec(spec, options.tiny)
    spec = settings.spec
    ctx = options.parallel
    device = torch.device(ctx.device if ctx is not None else options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CosmosError("--device cuda but no CUDA device is visible", key="device")
    dtype = options.dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    timer = StageTimer(device, progress)
    modalities = list(spec.controls)
    acc = options.acceleration or resolve_acceleration(device)
    prepare_process(acc)  # before the text encoder's first matmul: cuBLAS's workspace is fixed then
    pool = options.pool if options.pool is not None else ModelPool()

    # The memory plan first (its line opens the job): the spec and the input's header are all it reads.
    memory = plan_memory(
        spec, device=device, dtype=dtype, offload=options.offload, memory_cap_gib=options.memory_cap_gib,
        gpus=1 if ctx is None else ctx.world_size, text_encoder=options.prompt_embeddings is None,
        tiny=options.tiny, compiled=acc.compile,
        cuda_graphs=acc.compile and acc.compile_mode in ("reduce-overhead", "max-autotune"),
    )  # fmt: skip
    progress.note(memory.line())
    # Checks first: nothing below builds a model before these pass.
    with timer.stage("validate"):
        if _is_main(ctx):  # only rank 0 writes
            check_destination(options.out_dir, output_names(spec, options.latents_only))
        check_reference(spec.image_context_path, spec.context_frame_index)
        given_embeddings = None
        if options.prompt_embeddings is not None:
            given_embeddings = check_prompt_embeddings(options.prompt_embeddings, spec, options.tiny)
        files = locate_models(
            options.model_dir,
            modalities,
            tiny=options.tiny,
            need_text_encoder=options.prompt_embeddings is None,
            need_image_encoder=spec.image_context_path is not None or spec.context_frame_index is not None,
        )
        refuse_distilled(spec, files.distilled)
    guard: Guardrails | None = None
    if options.guardrails and _is_main(ctx):  # rank 0 alone checks, as upstream
        with timer.stage("guardrail_prompt"):  # a blocked prompt stops before any model is built
            guard = load_guardrails(device)
            guard.check_prompts(spec)

    def read_inputs(spec: Spec = spec) -> tuple[JobInputs, Any]:
        inputs = load_inputs(
            spec, controls_dir=options.controls_dir, masks_dir=options.masks_dir, device=str(device),
            models=ModelPaths.from_env(model_dir=options.model_dir, has_options=False),  # infer: no --*-model-dir
        )  # fmt: skip
        if _is_main(ctx):  # room for the outputs, now that the frame count is known
            planned = plan_chunks(
                inputs.num_frames, spec.num_video_frames_per_chunk, spec.num_conditional_frames
            )
            check_free_space(
                options.out_dir, expected_output_bytes(spec, inputs, planned, options.latents_only)
            )
        # Read (and so check) the style reference before the text encoder and the network are built.
        reference = reference_image(
            spec.image_context_path, spec.video_path, spec.context_frame_index, inputs.size
        )
        return inputs, reference

    pending = Background(read_inputs, device) if acc.prefetch_inputs else None
    if pending is None:
        with timer.stage("inputs"):
            inputs, reference = read_inputs()
    # Models earlier jobs left in the pool that this one does not use give way when it needs their memory.
    keep = [("net", pool.net_key(files, modalities, tiny=options.tiny, device=device, dtype=dtype,
                                 acceleration=acc, plan=memory.plan)),
            ("vae", pool.vae_key(files, tiny=options.tiny, device=device, dtype=dtype, plan=memory.plan))]  # fmt: skip
    if dropped := pool.make_room(keep, memory.estimate.peak, memory.budget):
        progress.note(f"memory: dropped {dropped} model(s) of earlier jobs to make room")
    text_device = device if memory.estimate.text_on_gpu else torch.device("cpu")
    with timer.stage("text"):  # before the DiT: a 7B encoder and the DiT need not share the GPU
        pos, neg = prompt_embeddings(
            spec, given_embeddings, files, device, lambda: pool.text_encoder(files, text_device)
        )
    with timer.stage("load_models"):
        net, distilled = pool.net(
            files,
            modalities,
            tiny=options.tiny,
            device=device,
            dtype=dtype,
            acceleration=acc,
            plan=memory.plan,
        )
        vae = pool.vae(files, tiny=options.tiny, device=device, dtype=dtype, plan=memory.plan)
    # The sidecar's checkpoint sha256, read while the GPU works: a machine's first job hashes gigabytes.
    hashing = Background(lambda: checkpoint_hashes(files)) if _is_main(ctx) else None
    residency = Residency(
        memory.plan, {id(m): pool.offload[id(m)] for m in (net, vae) if id(m) in pool.offload}
    )
    if pending is not None:  # read while the models loaded; its errors are raised here, before any step
        with timer.stage("inputs_wait"):
            inputs, reference = pending.result()
        timer.seconds["inputs"] = pending.seconds
    chunks = plan_chunks(inputs.num_frames, spec.num_video_frames_per_chunk, spec.num_conditional_frames)
    if distilled:
        refuse_distilled(spec, distilled)  # a .pt checkpoint can reveal it is distilled only when loaded
        settings = _distilled_settings(settings)
        spec = settings.spec
    warnings = []
    if distilled and len(chunks) > 1:  # upstream logs the same warning
        warnings.append("the distilled model is not trained for chunk-by-chunk (autoregressive) generation")
    if inputs.guided_mask is not None and not inputs.guided_mask.any():
        warnings.append("guided_generation_mask is black everywhere: nothing is guided")
    sampler = job_sampler(spec, distilled)
    with residency.use(net):
        text_pair = (
            net.project_text(pos.to(device)),
            net.project_text(neg.to(device)) if sampler.guided else None,
        )
    image_tokens = None
    if (
        reference is not None
    ):  # a stage only where there is a style image: no "style reference" line otherwise
        with timer.stage("image_context"):
            image_tokens = image_context(reference, files, net, device)
    models = JobModels(net, vae, sampler, text_pair, image_tokens, ctx, device, residency)

    seeds = chunk_seeds(spec.seed, len(chunks))
    latents: list[torch.Tensor] = []
    panels: list[torch.Tensor] = []
    previous = None
    intervals: list[float] = []  # step-to-step times after each chunk's first step (which pays compilation)
    progress.set_chunks(len(chunks))
    with accelerated(acc):
        for chunk, seed in zip(chunks, seeds, strict=True):
            progress.chunk_started(chunk.index, spec.num_steps)
            ticks: list[float] = []

            def on_step(i: int, n: int, ticks: list[float] = ticks) -> None:
                if device.type == "cuda":  # the step's kernels are done: time it, not its launch
                    torch.cuda.synchronize(device)
                ticks.append(time.perf_counter())
                if len(ticks) > 1:
                    intervals.append(ticks[-1] - ticks[-2])
                progress.step(i, n)

            latent = diffuse_chunk(spec, inputs, models, chunk, len(chunks), seed, previous, timer, on_step)
            latents.append(latent)
            last = chunk.index == len(chunks) - 1
            if not (options.latents_only and last):  # the next chunk starts from these frames
                with timer.stage("vae_decode"), residency.use(vae):
                    tile = decode_tile(tuple(latent.shape), memory.plan)
                    decoded = vae.decode(latent.to(vae.dtype), tile=tile).float()
                    if not options.latents_only:  # to bytes where the frames are: a quarter of the copy
                        frames = to_uint8_frames(decoded).cpu()
                        panels.append(panels_for_chunk(spec, inputs, chunk, frames))
                    previous = carried_frames(decoded, chunks, chunk.index)
                    del decoded

    if not _is_main(ctx):
        return JobResult(None, None, None, inputs.num_frames, inputs.fps, timer.rounded())
    label = TINY_LABEL if options.tiny else (DISTILLED_LABEL if distilled else FULL_LABEL)
    plan = LatentPlan.of(spec, inputs, chunks, label=label, tiny=options.tiny)
    assert hashing is not None  # rank 0, the only one here, started it
    with timer.stage("provenance"):  # the hashes' wait: nothing once the steps outlasted them
        checkpoint_sha256 = hashing.result()
    record = job_record(
        spec, inputs, chunks, files, label=label, tiny=options.tiny, distilled=distilled,
        changed=settings.changed, seeds=seeds, device=device, dtype=dtype,
        world_size=1 if ctx is None else ctx.world_size, started=started, warnings=warnings,
        checkpoint_sha256=checkpoint_sha256, command=options.argv,
    )  # fmt: skip
    record["acceleration"] = acc.record(device)
    record["memory"] = {**memory.record(), **residency.record()}
    if device.type == "cuda":  # the kernel that ran, not the auto default's
        record["device"]["attention"] = record["acceleration"]["attention_kernel"]
    if guard is not None and panels:
        with timer.stage("guardrail_video"):  # a blocked video is not written
            panels = guard_panels(guard, panels, chunks, inputs.num_frames, inputs.size[1])
    record["guardrails"] = None if guard is None else guard.record()
    sidecar = options.out_dir / f"{spec.name}.json"
    with atomic_outputs() as outputs:  # published together, the sidecar last
        with timer.stage("write"):  # with the identities `cosmos-t2 reproduce` compares a rerun against
            paths = write_outputs(options, spec, inputs, chunks, plan, latents, panels, outputs)
            video = outputs.staged(paths["video"]) if "video" in paths else None
            record["identity"] = {
                "latents_sha256": latents_sha256(latents),
                **(video_identity(video) if video is not None else {}),
            }
            record["environment"] = environment(device, record["acceleration"], video)
            # what a batch checks before it skips the job as done (`batch.redo_reason`)
            record["output_files"] = {
                final.name: output_file_record(outputs.staged(final), record["identity"].get("video_sha256")
                                               if final == paths.get("video") else None)
                for final in paths.values()
            }  # fmt: skip
        record["run"] = run_record(options)
        finish_record(record, timer, spec.num_steps * len(chunks), paths, started)
        if (
            not options.first_in_process
        ):  # the interpreter's start and imports belong to the batch's first job
            record["startup_s"] = {k: 0.0 for k in record["startup_s"]}
        record["steady_seconds_per_step"] = round(statistics.median(intervals), 4) if intervals else None
        write_json(outputs.stage(sidecar, record=True), record)
    shown = paths.get("video") or paths.get("latents")
    progress.summary(record, Path(options.output_note) if options.output_note and shown else shown)
    return JobResult(
        sidecar, paths.get("video"), paths.get("latents"), inputs.num_frames, inputs.fps, timer.rounded()
    )


def output_file_record(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """A written file's size and sha256 (`sha256` when already computed: the video's identity)."""
    return {"bytes": path.stat().st_size, "sha256": sha256 or sha256_file(path)}


def run_record(options: RunOptions) -> dict[str, Any]:
    """How the job ran, as far as its bytes depend on it: with the resolved spec, all `reproduce` needs."""

    def path(p: Path | None) -> str | None:
        return None if p is None else str(Path(p).resolve())

    acc = options.acceleration
    return {
        "device": options.device,
        "tiny": options.tiny,
        "model_dir": path(options.model_dir),
        "controls_dir": path(options.controls_dir),
        "masks_dir": path(options.masks_dir),
        "prompt_embeddings": path(options.prompt_embeddings),
        "latents_only": options.latents_only,
        "offload": options.offload,
        "attn_backend": acc.attn_backend if acc is not None else "auto",
        "deterministic": acc.deterministic if acc is not None else None,
    }


def _is_main(ctx: ParallelContext | None) -> bool:
    return ctx is None or ctx.is_main


def _distilled_settings(settings: Settings) -> Settings:
    """The distilled model runs 4 steps unless the spec asks for another count, and no guidance."""
    spec = settings.spec
    changed = dict(settings.changed)
    if spec.num_steps == 35:  # the spec default: the distilled model's own count instead
        changed["num_steps"] = spec.num_steps
        spec = dataclasses.replace(spec, num_steps=DISTILLED_NUM_STEPS)
    return dataclasses.replace(settings, spec=spec, changed=changed)


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
