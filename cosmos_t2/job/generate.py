"""A job's third phase: the chunks. The chunk plan, the distilled model's settings and warnings, the
conditioning every chunk shares (projected text, style tokens), then each chunk's steps and decode, the
next chunk starting from the last frames the previous one generated."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from cosmos_t2.job.chunking import Chunk, carried_frames, plan_chunks
from cosmos_t2.job.conditioning import image_context
from cosmos_t2.job.diffuse import JobModels, diffuse_chunk, job_sampler
from cosmos_t2.job.guided import refuse_distilled
from cosmos_t2.job.inputs import to_uint8_frames
from cosmos_t2.job.load import Loaded
from cosmos_t2.job.output import panels_for_chunk
from cosmos_t2.job.prepare import Prepared
from cosmos_t2.job.settings import Settings, distilled_settings
from cosmos_t2.runtime.acceleration import accelerated
from cosmos_t2.runtime.residency import decode_tile
from cosmos_t2.sampling.unipc import chunk_seeds


@dataclass(frozen=True)
class Generation:
    """How the chunks run: the settings after the model's adjustments, the plan, the shared conditioning."""

    settings: Settings
    chunks: list[Chunk]
    seeds: list[int]
    warnings: list[str]
    models: JobModels


@dataclass(frozen=True)
class Generated:
    """The chunks' latents, their panels (none with latents only) and the steady step-to-step times."""

    latents: list[torch.Tensor]
    panels: list[torch.Tensor]
    intervals: list[float]  # after each chunk's first step (which pays compilation)


def condition(job: Prepared, loaded: Loaded) -> Generation:
    """The chunk plan and what every chunk shares; the distilled model's step count and warnings."""
    settings, inputs = job.settings, loaded.inputs_read.inputs
    spec = settings.spec
    chunks = plan_chunks(inputs.num_frames, spec.num_video_frames_per_chunk, spec.num_conditional_frames)
    if loaded.distilled:
        refuse_distilled(spec, True)  # a .pt checkpoint can reveal it is distilled only when loaded
        settings = distilled_settings(settings)
        spec = settings.spec
    warnings = []
    if loaded.distilled and len(chunks) > 1:  # upstream logs the same warning
        warnings.append("the distilled model is not trained for chunk-by-chunk (autoregressive) generation")
    if inputs.guided_mask is not None and not inputs.guided_mask.any():
        warnings.append("guided_generation_mask is black everywhere: nothing is guided")
    sampler = job_sampler(spec, loaded.distilled)
    net, device, (pos, neg) = loaded.net, job.device, loaded.embeddings
    with loaded.residency.use(net):
        text_pair = (
            net.project_text(pos.to(device)),
            net.project_text(neg.to(device)) if sampler.guided else None,
        )
    image_tokens = None
    reference = loaded.inputs_read.reference
    if (
        reference is not None
    ):  # a stage only where there is a style image: no "style reference" line otherwise
        with job.timer.stage("image_context"):
            image_tokens = image_context(reference, job.files, net, device)
    models = JobModels(
        net, loaded.vae, sampler, text_pair, image_tokens, job.parallel, device, loaded.residency
    )
    return Generation(settings, chunks, chunk_seeds(spec.seed, len(chunks)), warnings, models)


def diffuse_chunks(job: Prepared, loaded: Loaded, gen: Generation) -> Generated:
    """Each chunk's steps, then its decode (to panels, and to the frames the next chunk starts from)."""
    spec, inputs, chunks, timer = gen.settings.spec, loaded.inputs_read.inputs, gen.chunks, job.timer
    latents_only, device, vae = job.options.latents_only, job.device, loaded.vae
    latents: list[torch.Tensor] = []
    panels: list[torch.Tensor] = []
    previous = None
    intervals: list[float] = []
    job.progress.set_chunks(len(chunks))
    with accelerated(job.acceleration):
        for chunk, seed in zip(chunks, gen.seeds, strict=True):
            job.progress.chunk_started(chunk.index, spec.num_steps)
            ticks: list[float] = []

            def on_step(i: int, n: int, ticks: list[float] = ticks) -> None:
                if device.type == "cuda":  # the step's kernels are done: time it, not its launch
                    torch.cuda.synchronize(device)
                ticks.append(time.perf_counter())
                if len(ticks) > 1:
                    intervals.append(ticks[-1] - ticks[-2])
                job.progress.step(i, n)

            latent = diffuse_chunk(
                spec, inputs, gen.models, chunk, len(chunks), seed, previous, timer, on_step
            )
            latents.append(latent)
            last = chunk.index == len(chunks) - 1
            if not (latents_only and last):  # the next chunk starts from these frames
                with timer.stage("vae_decode"), loaded.residency.use(vae):
                    tile = decode_tile(tuple(latent.shape), job.memory.plan)
                    decoded = vae.decode(latent.to(vae.dtype), tile=tile).float()
                    if not latents_only:  # to bytes where the frames are: a quarter of the copy
                        frames = to_uint8_frames(decoded).cpu()
                        panels.append(panels_for_chunk(spec, inputs, chunk, frames))
                    previous = carried_frames(decoded, chunks, chunk.index)
                    del decoded
    return Generated(latents, panels, intervals)
