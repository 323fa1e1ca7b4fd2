"""spec -> video: the one place that wires inputs, controls, masks, embeddings, VAE, sampler and outputs.

`run_job(spec, options)` runs one job as the official `ControlVideo2WorldInference.generate_img2world`
does: chunk by chunk (`chunking.plan_chunks`), each chunk conditioned on the last frames the previous one
generated, per-chunk seeds derived as upstream (`sampling.chunk_seeds`), the sampler of `sampling.sample`
(or the distilled model's, `distilled.sample_distilled`), VAE decode per chunk, stitching, optional
side-by-side panels (controls | input | output, as upstream's show_control_condition / show_input), and a
resize back to the input size. Stages are timed; the sidecar JSON records them with the resolved spec.

Every check that can fail on user input runs before any model is built: the model directory
(`pipeline_models.locate_models`), frame counts of controls and masks and the guided-generation mask
(`pipeline_inputs.load_inputs`), chunk length, the prompt embeddings file; guided generation with the
distilled model (`cosmos_t2.pipeline.guided`: upstream's distilled sampler ignores it, so it is refused here).

Tiny mode (`--tiny`): the tiny network family with seeded random weights, resolution "tiny" (64 px high)
and 17-frame chunks (5 latent frames) unless the spec sets another chunk length, so a CPU run takes
seconds. Every output says "tiny random-weight model".
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.control import ControlInput
from cosmos_t2.pipeline.chunking import TEMPORAL_COMPRESSION, Chunk, conditioning_video, plan_chunks
from cosmos_t2.pipeline.context import check_prompt_embeddings, image_context, progress_bar, prompt_embeddings
from cosmos_t2.pipeline.guided import chunk_guide, guided_record, refuse_distilled
from cosmos_t2.pipeline.inputs import JobInputs, load_inputs, to_model_video, to_uint8_frames
from cosmos_t2.pipeline.models import TINY_LABEL, build_net, build_tokenizer, locate_models
from cosmos_t2.pipeline.output import LatentPlan, panels_for_chunk, write_outputs
from cosmos_t2.pipeline.sidecar import StageTimer, device_info, versions
from cosmos_t2.spec.job import Spec

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
    progress: bool = True
    parallel: Any = None  # parallel.ParallelContext of this rank under torchrun; None: one process


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
    if (spec.num_video_frames_per_chunk - 1) % 4:
        raise CosmosError(
            f"must be 1 + 4k frames (the VAE packs 4 frames per latent frame), got {spec.num_video_frames_per_chunk}",
            key="num_video_frames_per_chunk",
        )
    return Settings(spec=spec, changed=changed, tiny=tiny)


# --- stages ---------------------------------------------------------------------------------------


def _velocity(
    net: Any, options: RunOptions, text_pair: tuple[torch.Tensor, torch.Tensor | None], **cond: Any
) -> Any:
    """The sampler's velocity function: the network with this chunk's controls, CFG batched (or split
    over ranks under torchrun)."""
    from cosmos_t2.distributed.parallel import ParallelNet, parallel_velocity
    from cosmos_t2.sampling.unipc import guided_velocity

    call = ParallelNet(net, options.parallel) if options.parallel is not None else net
    controls: list[ControlInput] = cond["controls"]

    def forward(x: torch.Tensor, timesteps: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        batch = [dataclasses.replace(c, latent=c.latent.expand(b, *c.latent.shape[1:])) for c in controls]
        image = cond["image_context"]
        # guided_velocity batches the CFG pair as [x; x] with [prompt; negative]: equal halves but for text
        cfg_halves = text_emb.shape[0] == 2 * text_pair[0].shape[0]
        return call(
            x,
            timesteps,
            text_emb,
            condition_mask=cond["condition_mask"].expand(b, *cond["condition_mask"].shape[1:]),
            controls=batch,
            image_context=None if image is None else image.expand(b, *image.shape[1:]),
            cfg_halves=cfg_halves,
        )

    if options.parallel is not None:
        return parallel_velocity(forward, text_pair[0], text_pair[1], options.parallel)
    return guided_velocity(forward, text_pair[0], text_pair[1])


def _chunk_controls(
    spec: Spec, inputs: JobInputs, chunk: Chunk, vae: Any, net: Any, device: torch.device
) -> list[ControlInput]:
    from cosmos_t2.controls.masks import resample_mask_to_latent

    idx = list(chunk.frame_indices)
    out = []
    for branch, (modality, frames) in enumerate(inputs.controls.items()):
        latent = vae.encode(to_model_video(frames[idx]).to(device, vae.dtype)).float()
        mask = inputs.masks.get(modality)
        if mask is not None:
            _, _, t, h, w = latent.shape
            ps = net.config.patch_spatial
            mask = resample_mask_to_latent(mask[idx], t, h // ps, w // ps)[None, None].to(device)
        weight = spec.controls[modality].control_weight
        out.append(ControlInput(latent=latent, weight=weight, mask=mask, branch=branch))
    return out


def _diffuse_chunk(
    spec: Spec,
    chunk: Chunk,
    seed: int,
    previous: torch.Tensor | None,
    *,
    inputs: JobInputs,
    vae: Any,
    net: Any,
    text_pair: tuple[torch.Tensor, torch.Tensor | None],
    image_tokens: torch.Tensor | None,
    distilled: bool,
    options: RunOptions,
    device: torch.device,
    timer: StageTimer,
    on_step: Any,
) -> torch.Tensor:
    """One chunk from noise to its clean latent (1, 16, T, h, w) fp32."""
    from cosmos_t2.sampling.distilled import sample_distilled
    from cosmos_t2.sampling.unipc import condition_mask, flow_schedule, initial_noise, sample

    with timer.stage("vae_encode"):
        controls = _chunk_controls(spec, inputs, chunk, vae, net, device)
        shape = tuple(controls[0].latent.shape)
        cond_latent = cond_mask = None
        if chunk.cond_frames and previous is not None:
            # Only the first cond_latent_frames latent frames condition the chunk (the rest are masked out),
            # and the causal VAE computes them from the first 1 + 4(n - 1) pixel frames alone: encode just
            # those instead of the whole black-padded chunk, and zero-fill the masked latent frames.
            n = chunk.cond_latent_frames
            video = conditioning_video(previous, chunk)[:, :, : 1 + TEMPORAL_COMPRESSION * (n - 1)]
            head = vae.encode(video.to(device, vae.dtype)).float()
            cond_latent = torch.nn.functional.pad(head, (0, 0, 0, 0, 0, shape[2] - head.shape[2]))
            cond_mask = condition_mask(shape, n, device)
        # sigma_max and guided generation both start from the chunk's input latent: encode it once.
        use_sigma_max = spec.sigma_max is not None and not distilled
        x0 = None
        if use_sigma_max or inputs.guided_mask is not None:
            x0 = vae.encode(to_model_video(inputs.frames[list(chunk.frame_indices)]).to(device, vae.dtype))
        init_latent = x0 if use_sigma_max else None
        guide = None
        if inputs.guided_mask is not None:
            assert x0 is not None and not distilled  # run_job refuses the distilled model with a mask
            guide = chunk_guide(inputs.guided_mask, chunk, x0, spec.guided_generation_step_threshold)
    noise = initial_noise(seed, shape, device)
    velocity = _velocity(
        net,
        options,
        text_pair,
        controls=controls,
        condition_mask=cond_mask if cond_mask is not None else torch.zeros_like(noise[:, :1]),
        image_context=image_tokens,
    )
    with timer.stage("diffusion"):
        if distilled:
            return sample_distilled(
                velocity, noise, num_steps=spec.num_steps, condition_latent=cond_latent,
                condition_mask=cond_mask, progress=on_step,
            )  # fmt: skip
        schedule = flow_schedule(spec.num_steps, sigma_max=spec.sigma_max)
        return sample(
            velocity, noise, schedule=schedule, guidance=float(spec.guidance), condition_latent=cond_latent,
            condition_mask=cond_mask, init_latent=init_latent, guide=guide, progress=on_step,
        )  # fmt: skip


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Bit-identical reruns on CPU: deterministic kernels for the duration of the job."""
    if device.type != "cpu":
        yield
        return
    was, warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def run_job(spec: Spec, options: RunOptions) -> JobResult:
    """Run one job; rank 0 writes DIR/<name>.mp4 (or .latents.safetensors) and DIR/<name>.json."""
    started = time.time()
    settings = effective_spec(spec, options.tiny)
    spec = settings.spec
    ctx = options.parallel
    device = torch.device(ctx.device if ctx is not None else options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CosmosError("--device cuda but no CUDA device is visible", key="device")
    dtype = options.dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    timer = StageTimer(device)
    modalities = list(spec.controls)

    # Checks first: nothing below builds a model before these pass.
    with timer.stage("validate"):
        from cosmos_t2.model.image_context import check_reference

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
    with timer.stage("inputs"):
        from cosmos_t2.model.image_context import reference_image

        inputs = load_inputs(
            spec, controls_dir=options.controls_dir, masks_dir=options.masks_dir, device=str(device)
        )
        # Read (and so check) the style reference before the text encoder and the network are built.
        reference = reference_image(
            spec.image_context_path, spec.video_path, spec.context_frame_index, inputs.size
        )
    chunks = plan_chunks(inputs.num_frames, spec.num_video_frames_per_chunk, spec.num_conditional_frames)
    with timer.stage("text"):  # before the DiT: a 7B encoder and the DiT need not share the GPU
        pos, neg = prompt_embeddings(spec, given_embeddings, files, device)
    with timer.stage("load_models"):
        net, distilled = build_net(files, modalities, tiny=options.tiny, device=device, dtype=dtype)
        vae = build_tokenizer(files, tiny=options.tiny, device=device, dtype=dtype)
    if distilled:
        refuse_distilled(spec, distilled)  # a .pt checkpoint can reveal it is distilled only when loaded
        settings = _distilled_settings(settings)
        spec = settings.spec
    warnings = []
    if distilled and len(chunks) > 1:  # upstream logs the same warning
        warnings.append("the distilled model is not trained for chunk-by-chunk (autoregressive) generation")
    if inputs.guided_mask is not None and not inputs.guided_mask.any():
        warnings.append("guided_generation_mask is black everywhere: nothing is guided")
    guided = not distilled and spec.guidance != 0
    text_pair = (net.project_text(pos.to(device)), net.project_text(neg.to(device)) if guided else None)
    with timer.stage("image_context"):
        image_tokens = image_context(reference, files, net, device)

    from cosmos_t2.sampling.unipc import chunk_seeds

    seeds = chunk_seeds(spec.seed, len(chunks))
    latents: list[torch.Tensor] = []
    panels: list[torch.Tensor] = []
    previous = None
    with _deterministic(device), progress_bar(options.progress and _is_main(ctx), len(chunks)) as bar:
        for chunk, seed in zip(chunks, seeds, strict=True):
            if bar is not None:
                bar.reset(1, total=spec.num_steps)

            def on_step(i: int, n: int) -> None:
                if bar is not None:
                    bar.update(1, completed=i, total=n)

            latent = _diffuse_chunk(
                spec, chunk, seed, previous, inputs=inputs, vae=vae, net=net, text_pair=text_pair,
                image_tokens=image_tokens, distilled=distilled, options=options, device=device, timer=timer,
                on_step=on_step,
            )  # fmt: skip
            latents.append(latent)
            last = chunk.index == len(chunks) - 1
            if not (options.latents_only and last):  # the next chunk starts from these frames
                with timer.stage("vae_decode"):
                    previous = vae.decode(latent.to(vae.dtype)).float()
                if not options.latents_only:
                    panels.append(panels_for_chunk(spec, inputs, chunk, to_uint8_frames(previous.cpu())))
            if bar is not None:
                bar.update(0, advance=1)

    if not _is_main(ctx):
        return JobResult(None, None, None, inputs.num_frames, inputs.fps, timer.rounded())
    label = TINY_LABEL if options.tiny else (DISTILLED_LABEL if distilled else FULL_LABEL)
    plan = LatentPlan.of(spec, inputs, chunks, label=label, tiny=options.tiny)
    steps = spec.num_steps * len(chunks)
    record = {
        "name": spec.name,
        "label": label,
        "tiny": options.tiny,
        "distilled": distilled,
        "spec": spec.to_dict(),
        "changed_by_mode": settings.changed,
        "seed": spec.seed,
        "chunk_seeds": seeds,
        "num_frames": inputs.num_frames,
        "fps": inputs.fps,
        "model_size": list(inputs.size),
        "source_size": list(inputs.source_size),
        "chunks": [dataclasses.asdict(c) for c in chunks],
        "steps": spec.num_steps,
        "diffusion_steps_total": steps,
        "sources": inputs.sources,
        "models": files.to_dict(),
        "versions": versions(),
        "device": device_info(device, dtype, 1 if ctx is None else ctx.world_size),
        "created_unix": math.floor(started),
        "warnings": warnings,
        "guided_generation": guided_record(spec, inputs.guided_mask),
    }
    with timer.stage("write"):
        paths = write_outputs(options, spec, inputs, chunks, plan, latents, panels)
    record["timings_s"] = timer.rounded()
    diffusion = timer.seconds.get("diffusion", 0.0)
    record["seconds_per_step"] = round(diffusion / steps, 4) if steps else None
    record["peak_memory_gib"] = {k: round(v, 3) for k, v in timer.peak_memory_gib().items()}
    record["total_s"] = round(time.time() - started, 3)
    record["outputs"] = {k: p.name for k, p in paths.items() if p is not None}
    from cosmos_t2.pipeline.sidecar import write_json

    sidecar = write_json(options.out_dir / f"{spec.name}.json", record)
    return JobResult(
        sidecar, paths.get("video"), paths.get("latents"), inputs.num_frames, inputs.fps, timer.rounded()
    )


def _is_main(ctx: Any) -> bool:
    return ctx is None or ctx.is_main


def _distilled_settings(settings: Settings) -> Settings:
    """The distilled model runs 4 steps unless the spec asks for another count, and no guidance."""
    from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS

    spec = settings.spec
    changed = dict(settings.changed)
    if spec.num_steps == 35:  # the spec default: the distilled model's own count instead
        changed["num_steps"] = spec.num_steps
        spec = dataclasses.replace(spec, num_steps=DISTILLED_NUM_STEPS)
    return dataclasses.replace(settings, spec=spec, changed=changed)


def run_on_ranks(spec: Spec, options: RunOptions) -> JobResult:
    """`run_job` in this process, or, inside a torchrun job (`--gpus N`), as one rank of it: the
    network's frames split over the ranks and, with an even count and guidance, the two CFG passes on
    the two halves (`parallel.ParallelNet`, `parallel.parallel_velocity`). Rank 0 alone writes."""
    import os

    from cosmos_t2.distributed.launch import under_torchrun

    if not under_torchrun():
        return run_job(spec, options)
    from cosmos_t2.distributed.parallel import parallel_job

    world = int(os.environ["WORLD_SIZE"])
    with parallel_job(options.device, cfg_parallel=world % 2 == 0 and spec.guidance != 0) as ctx:
        return run_job(
            spec, dataclasses.replace(options, parallel=ctx, progress=options.progress and ctx.is_main)
        )
