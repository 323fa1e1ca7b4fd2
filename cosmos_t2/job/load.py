"""A job's second phase: the models. Room in the pool, the prompt embeddings (before the DiT: a 7B text
encoder and the DiT need not share the GPU), the network and the VAE, the checkpoint hashes started on a
thread, where each model sits (residency), and the prefetched inputs, whose errors are raised here, after
the load but before any step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cosmos_t2.job.conditioning import prompt_embeddings
from cosmos_t2.job.prepare import JobInputsRead, Prepared
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import WanVAE
from cosmos_t2.runtime.acceleration import Background
from cosmos_t2.runtime.residency import Residency
from cosmos_t2.weights.hashes import checkpoint_hashes


@dataclass(frozen=True)
class Loaded:
    """The built models, the prompt embeddings, and the inputs the prepare phase read or started."""

    net: TransferNet
    vae: WanVAE
    distilled: bool
    embeddings: tuple[torch.Tensor, torch.Tensor]  # prompt, negative prompt
    residency: Residency
    hashing: Background[dict[str, Any] | None] | None  # the sidecar's checkpoint sha256, rank 0 only
    inputs_read: JobInputsRead


def load(job: Prepared) -> Loaded:
    """Build (or take from the pool) what the job runs; wait for the inputs."""
    pool, files, opts, memory, timer = job.pool, job.files, job.options, job.memory, job.timer
    modalities = list(job.spec.controls)
    common: dict[str, Any] = {
        "tiny": opts.tiny,
        "device": job.device,
        "dtype": job.dtype,
        "plan": memory.plan,
    }
    # Models earlier jobs left in the pool that this one does not use give way when it needs their memory.
    keep = [("net", pool.net_key(files, modalities, acceleration=job.acceleration, **common)),
            ("vae", pool.vae_key(files, **common))]  # fmt: skip
    if dropped := pool.make_room(keep, memory.estimate.peak, memory.budget):
        job.progress.note(f"memory: dropped {dropped} model(s) of earlier jobs to make room")
    text_device = job.device if memory.estimate.text_on_gpu else torch.device("cpu")
    with timer.stage("text"):  # before the DiT: a 7B encoder and the DiT need not share the GPU
        pos, neg = prompt_embeddings(
            job.spec, job.given_embeddings, files, job.device, lambda: pool.text_encoder(files, text_device)
        )
    with timer.stage("load_models"):
        net, distilled = pool.net(files, modalities, acceleration=job.acceleration, **common)
        vae = pool.vae(files, **common)
    # The sidecar's checkpoint sha256, read while the GPU works: a machine's first job hashes gigabytes.
    hashing = Background(lambda: checkpoint_hashes(files)) if job.is_main else None
    residency = Residency(
        memory.plan, {id(m): pool.offload[id(m)] for m in (net, vae) if id(m) in pool.offload}
    )
    inputs_read = job.inputs_read
    if job.pending is not None:  # read while the models loaded; its errors are raised here, before any step
        with timer.stage("inputs_wait"):
            inputs_read = job.pending.result()
        timer.seconds["inputs"] = job.pending.seconds
    assert inputs_read is not None  # read in the prepare phase, or by its thread
    return Loaded(net, vae, distilled, (pos, neg), residency, hashing, inputs_read)
