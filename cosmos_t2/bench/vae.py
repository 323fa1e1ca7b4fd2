"""Encode and decode time and peak memory of the Wan2.1 VAE on one clip (random weights)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from cosmos_t2.model.vae import VAEConfig, build_vae


def bench_vae(
    device: str | torch.device = "cuda",
    *,
    config: VAEConfig | None = None,
    frames: int = 93,
    height: int = 704,
    width: int = 1280,
    decode_chunk_frames: int | None = 1,
    encode_chunk_frames: int = 4,
    tile: tuple[int, ...] | None = None,
    channels_last: bool | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float | int | str | bool | None]:
    """Time encode and decode of one `frames` x `height` x `width` clip with a random-weight VAE.

    A warm-up on a short clip of the same size first (cuDNN autotuning, allocator); then one timed
    encode and one timed decode (CUDA events on GPU, wall clock on CPU), each with its own peak
    memory. Returns seconds and GiB.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    vae = build_vae(config, dtype, device, channels_last=channels_last)
    cfg = vae.config
    gen = torch.Generator(device="cpu").manual_seed(0)
    video = (torch.rand((1, 3, frames, height, width), generator=gen) * 2 - 1).to(device, vae.dtype)
    warm = video[:, :, : min(frames, 1 + 2 * cfg.temporal_factor)]
    # count convs that get activations in another layout than their weights (each costs a copy)
    relayouts = []

    def check_layout(m: nn.Module, args: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        x = args[0]
        fmt = (torch.channels_last_3d if x.dim() == 5 else torch.channels_last) if vae.channels_last else None
        if not x.is_contiguous(memory_format=fmt or torch.contiguous_format):
            relayouts.append(type(m).__name__)

    hooks = [
        m.register_forward_hook(check_layout) for m in vae.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)
    ]
    vae.decode(
        vae.encode(warm, chunk_frames=encode_chunk_frames), chunk_frames=decode_chunk_frames, tile=tile
    )
    for h in hooks:
        h.remove()

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
        if not cuda:
            t0 = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t0, math.nan
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        stop.record()
        torch.cuda.synchronize(device)
        return out, start.elapsed_time(stop) / 1000.0, torch.cuda.max_memory_allocated(device) / 2**30

    latent, enc_s, enc_gib = timed(lambda: vae.encode(video, chunk_frames=encode_chunk_frames))
    recon, dec_s, dec_gib = timed(lambda: vae.decode(latent, chunk_frames=decode_chunk_frames, tile=tile))
    return {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "dtype": str(vae.dtype).removeprefix("torch."),
        "channels_last": vae.channels_last,
        "frames": frames,
        "height": height,
        "width": width,
        "latent_shape": "x".join(map(str, latent.shape)),
        "video_shape": "x".join(map(str, recon.shape)),
        "encode_chunk_frames": encode_chunk_frames,
        "decode_chunk_frames": decode_chunk_frames,
        "tile": None if tile is None else "x".join(map(str, tile)),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "conv_relayouts_in_warmup": len(relayouts),
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_peak_gib": enc_gib,
        "decode_peak_gib": dec_gib,
    }
