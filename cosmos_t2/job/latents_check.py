"""What a latents file must hold before `render` trusts it: its chunk plan and tensors, checked.

A latents file may come from another machine, another version, or a hand: every field `render` reads is
checked here (type, range, and agreement between the chunk plan and the tensors' shapes), so a crafted
or damaged file is one error naming the file and the field, not a traceback from deep inside the VAE.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.config import TEMPORAL_COMPRESSION

LATENT_CHANNELS = 16  # the Wan2.1 VAE's z_dim, tiny and full size alike
SPATIAL_COMPRESSION = 8  # pixels per latent position along each side
MAX_SIDE = 16384  # pixels: a bigger source size asks `render` for a frame no GPU holds
_PLAN_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "label": (str,),
    "tiny": (bool,),
    "fps": (int, float),
    "num_frames": (int,),
    "model_size": (list,),
    "source_size": (list,),
    "keep_input_resolution": (bool,),
    "chunks": (list,),
}
_CHUNK_KEYS = ("index", "start", "end", "cond_frames", "frames_per_chunk")


def _fail(path: Path, key: str, message: str) -> CosmosError:
    return CosmosError(f"not a usable cosmos-t2 latents file: {message}", file=path, key=key)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size(meta: dict[str, Any], key: str, path: Path) -> tuple[int, int]:
    value = meta[key]
    if len(value) != 2 or not all(_is_int(v) and 0 < v <= MAX_SIDE for v in value):
        raise _fail(path, key, f"expected [height, width] in pixels (1..{MAX_SIDE}), got {value!r}")
    return value[0], value[1]


def _check_plan(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise _fail(path, "cosmos_t2", "its metadata is not a JSON object")
    for key, types in _PLAN_TYPES.items():
        if key not in meta:
            raise _fail(path, key, "missing from its metadata")
        value = meta[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise _fail(path, key, f"expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
    extra = sorted(set(meta) - set(_PLAN_TYPES))
    if extra:
        raise _fail(path, extra[0], "unknown key in its metadata")
    if not (math.isfinite(meta["fps"]) and meta["fps"] > 0):
        raise _fail(path, "fps", f"expected a positive frame rate, got {meta['fps']!r}")
    _size(meta, "model_size", path)
    _size(meta, "source_size", path)
    if not meta["chunks"]:
        raise _fail(path, "chunks", "the chunk plan is empty")
    kept = 0
    for i, chunk in enumerate(meta["chunks"]):
        key = f"chunks[{i}]"
        if not isinstance(chunk, dict) or sorted(chunk) != sorted(_CHUNK_KEYS):
            raise _fail(path, key, f"expected an object with {', '.join(_CHUNK_KEYS)}")
        if not all(_is_int(chunk[k]) for k in _CHUNK_KEYS):
            raise _fail(path, key, "expected integers")
        fpc, cond = chunk["frames_per_chunk"], chunk["cond_frames"]
        if (
            chunk["index"] != i
            or fpc < 1 + TEMPORAL_COMPRESSION
            or (fpc - 1) % TEMPORAL_COMPRESSION
            or not 0 <= cond < fpc
            or not 0 <= chunk["start"] < chunk["end"]
        ):
            raise _fail(path, key, f"an inconsistent chunk {chunk!r}")
        kept += fpc if i == 0 else fpc - cond
    if not 1 <= meta["num_frames"] <= kept:
        raise _fail(
            path, "num_frames", f"the chunks hold {kept} frames, the plan says {meta['num_frames']!r}"
        )


def check_latents(chunks: list[torch.Tensor], meta: Any, path: Path) -> None:
    """Raise a CosmosError unless `meta` is a whole chunk plan and `chunks` fit it: one finite
    (1, 16, 1 + (frames_per_chunk - 1) / 4, height / 8, width / 8) tensor per chunk."""
    _check_plan(meta, path)
    if len(chunks) != len(meta["chunks"]):
        raise _fail(path, "chunks", f"{len(chunks)} chunk tensors for a plan of {len(meta['chunks'])} chunks")
    height, width = _size(meta, "model_size", path)
    for i, (tensor, chunk) in enumerate(zip(chunks, meta["chunks"], strict=True)):
        frames = 1 + (chunk["frames_per_chunk"] - 1) // TEMPORAL_COMPRESSION
        want = (1, LATENT_CHANNELS, frames, height // SPATIAL_COMPRESSION, width // SPATIAL_COMPRESSION)
        if tuple(tensor.shape) != want:
            raise _fail(path, f"chunk_{i}", f"expected a tensor of shape {want}, got {tuple(tensor.shape)}")
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise _fail(path, f"chunk_{i}", "expected finite floating-point values")
