"""One chunk of a job, from noise to its clean latent: the models every chunk shares, the chunk's controls
encoded by the VAE (with their masks on the token grid), its conditioning (the previous chunk's last frames,
the input latent for sigma_max and guided generation), and the sampler chosen once per job, run under the
NaN/Inf guard. `job.run` calls `diffuse_chunk` for each chunk and does everything around it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cosmos_t2.controls.masks import mask_to_latent_grid
from cosmos_t2.distributed.context import ParallelContext
from cosmos_t2.distributed.net import ParallelNet, parallel_velocity
from cosmos_t2.job.chunking import Chunk, conditioning_video
from cosmos_t2.job.guided import chunk_guide
from cosmos_t2.job.inputs import JobInputs, to_model_video
from cosmos_t2.job.record import StageTimer
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model.config import TEMPORAL_COMPRESSION
from cosmos_t2.model.control import ControlInput, TransferNet
from cosmos_t2.model.vae import WanVAE
from cosmos_t2.runtime.residency import Residency, on_device
from cosmos_t2.sampling.base import ChunkConditioning, Sampler, VelocityFn
from cosmos_t2.sampling.distilled import DistilledSampler
from cosmos_t2.sampling.guard import guarded_sample
from cosmos_t2.sampling.unipc import UniPCSampler, condition_mask, guided_velocity, initial_noise


@dataclass(frozen=True)
class JobModels:
    """What every chunk of one job shares: the built models, the sampler chosen for them, and the
    conditioning that does not change from chunk to chunk."""

    net: TransferNet
    vae: WanVAE
    sampler: Sampler
    text_pair: tuple[torch.Tensor, torch.Tensor | None]  # projected prompt / negative-prompt embeddings
    image_tokens: torch.Tensor | None
    parallel: ParallelContext | None
    device: torch.device
    residency: Residency | None = None  # where the models sit per stage; None: all resident


def chunk_velocity(
    models: JobModels, controls: list[ControlInput], condition_mask: torch.Tensor
) -> VelocityFn:
    """The sampler's velocity function: the network with this chunk's controls, CFG batched (or split
    over ranks under torchrun)."""
    call = ParallelNet(models.net, models.parallel) if models.parallel is not None else models.net
    prompt, negative = models.text_pair
    image = models.image_tokens

    def forward(x: torch.Tensor, timesteps: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        batch = [dataclasses.replace(c, latent=c.latent.expand(b, *c.latent.shape[1:])) for c in controls]
        # guided_velocity batches the CFG pair as [x; x] with [prompt; negative]: equal halves but for text
        cfg_halves = text_emb.shape[0] == 2 * prompt.shape[0]
        return call(
            x,
            timesteps,
            text_emb,
            condition_mask=condition_mask.expand(b, *condition_mask.shape[1:]),
            controls=batch,
            image_context=None if image is None else image.expand(b, *image.shape[1:]),
            cfg_halves=cfg_halves,
        )

    if models.parallel is not None:
        return parallel_velocity(forward, prompt, negative, models.parallel)
    # On CPU the CFG pair runs as two batches of one, as the two ranks of `--gpus 2` run it: MKL picks its GEMM
    # kernel by the row count, so a batch of 2 rounds differently from 2 of 1 (1.3e-5 in a tiny job's
    # latents on an AMD EPYC) and the two paths would not give the same bytes. A CPU GEMM gains nothing from
    # the second row block; on CUDA one launch of batch 2 is the faster step.
    return guided_velocity(forward, prompt, negative, batch_cfg=models.device.type != "cpu")


def chunk_controls(spec: Spec, inputs: JobInputs, chunk: Chunk, models: JobModels) -> list[ControlInput]:
    vae, device = models.vae, models.device
    idx = list(chunk.frame_indices)
    out = []
    for branch, (modality, frames) in enumerate(inputs.controls.items()):
        latent = vae.encode(to_model_video(frames[idx]).to(device, vae.dtype)).float()
        mask = inputs.masks.get(modality)
        if mask is not None:
            _, _, t, h, w = latent.shape
            ps = models.net.config.patch_spatial
            mask = mask_to_latent_grid(mask[idx], t, h // ps, w // ps)[None, None].to(device)
        weight = spec.controls[modality].control_weight
        out.append(ControlInput(latent=latent, weight=weight, mask=mask, branch=branch))
    return out


def conditioning_latent(
    previous: torch.Tensor, chunk: Chunk, vae: WanVAE, device: torch.device, latent_frames: int
) -> torch.Tensor:
    """The latent of `chunk`'s conditioning video, zero-filled to `latent_frames` (1, 16, T, h, w) fp32.

    Only the first cond_latent_frames latent frames condition the chunk (the rest are masked out), and the
    causal VAE computes them from the first 1 + 4(n - 1) pixel frames alone: build and encode just those
    instead of the whole black-padded chunk (1 GiB in fp32 at 720p).
    """
    n = chunk.cond_latent_frames
    video = conditioning_video(previous, chunk, frames=1 + TEMPORAL_COMPRESSION * (n - 1))
    head = vae.encode(video.to(device, vae.dtype)).float()
    return torch.nn.functional.pad(head, (0, 0, 0, 0, 0, latent_frames - head.shape[2]))


def diffuse_chunk(
    spec: Spec,
    inputs: JobInputs,
    models: JobModels,
    chunk: Chunk,
    num_chunks: int,
    seed: int,
    previous: torch.Tensor | None,
    timer: StageTimer,
    on_step: Callable[[int, int], None],
) -> torch.Tensor:
    """One chunk from noise to its clean latent (1, 16, T, h, w) fp32."""
    vae, device = models.vae, models.device
    with timer.stage("vae_encode"), on_device(models.residency, vae):
        controls = chunk_controls(spec, inputs, chunk, models)
        shape = tuple(controls[0].latent.shape)
        cond_latent = cond_mask = None
        if chunk.cond_frames and previous is not None:
            cond_latent = conditioning_latent(previous, chunk, vae, device, shape[2])
            cond_mask = condition_mask(shape, chunk.cond_latent_frames, device)
        # sigma_max and guided generation both start from the chunk's input latent: encode it once.
        from_input = models.sampler.starts_from_input
        x0 = None
        if from_input or inputs.guided_mask is not None:
            x0 = vae.encode(to_model_video(inputs.frames[list(chunk.frame_indices)]).to(device, vae.dtype))
        guide = None
        if inputs.guided_mask is not None:
            assert x0 is not None  # run_job refuses the distilled model with a mask
            guide = chunk_guide(inputs.guided_mask, chunk, x0, spec.guided_generation_step_threshold)
    noise = initial_noise(seed, shape, device)
    cond = ChunkConditioning(
        noise=noise, condition_latent=cond_latent, condition_mask=cond_mask,
        init_latent=x0 if from_input else None, guide=guide,
    )  # fmt: skip
    network_mask = cond_mask if cond_mask is not None else torch.zeros_like(noise[:, :1])
    velocity = chunk_velocity(models, controls, network_mask)
    with timer.stage("diffusion"), on_device(models.residency, models.net):
        return guarded_sample(
            models.sampler, velocity, cond, chunk=chunk.index, num_chunks=num_chunks, progress=on_step,
            file=spec.name,
        )  # fmt: skip


def job_sampler(spec: Spec, distilled: bool) -> Sampler:
    """The job's sampler, chosen once: the distilled model's 4-step loop, or UniPC with CFG."""
    if distilled:
        return DistilledSampler(num_steps=spec.num_steps)
    return UniPCSampler(num_steps=spec.num_steps, guidance=float(spec.guidance), sigma_max=spec.sigma_max)
