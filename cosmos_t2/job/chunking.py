"""Long videos as chunks, stitched the way the official inference does (pure functions on frame indices).

Upstream (`ControlVideo2WorldInference.generate_img2world`): a chunk is `frames_per_chunk` pixel frames
(93 -> 24 latent frames). Chunk i starts at i * (frames_per_chunk - cond) where cond is
`num_conditional_frames`; its first `cond` frames are the last `cond` frames the previous chunk
generated (decoded, rounded to uint8, the rest of the conditioning video black), encoded into
1 + (cond - 1) // 4 clean latent frames. The first chunk has no conditioning frames. A window that runs
past the video is filled by mirroring its frames (last frame repeated first). The output keeps all of
chunk 0 and the frames after the conditioning ones of every later chunk, trimmed to the video length.
Input frames, controls and masks of a chunk are `frames[chunk.frame_indices]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cosmos_t2.model.config import TEMPORAL_COMPRESSION


@dataclass(frozen=True)
class Chunk:
    """One window of the video. start/end: its real frames [start, end); cond_frames: frames carried
    over from the previous chunk (they are [start, start + cond_frames))."""

    index: int
    start: int
    end: int
    cond_frames: int
    frames_per_chunk: int

    @property
    def frame_indices(self) -> tuple[int, ...]:
        """Source frame of each of the frames_per_chunk window positions (mirrored past `end`)."""
        return padded_indices(list(range(self.start, self.end)), self.frames_per_chunk)

    @property
    def cond_latent_frames(self) -> int:
        return 0 if self.cond_frames == 0 else 1 + (self.cond_frames - 1) // TEMPORAL_COMPRESSION

    @property
    def keep(self) -> slice:
        """Window positions this chunk adds to the output (before trimming to the video length)."""
        return slice(self.cond_frames, self.frames_per_chunk)


def padded_indices(indices: list[int], length: int) -> tuple[int, ...]:
    """Fill `indices` up to `length` as upstream's reflect padding does: append the reversed sequence
    (starting with the last element) until long enough; a single frame is repeated."""
    if not indices:
        raise ValueError("a chunk needs at least one frame")
    out = list(indices)
    while len(out) < length:
        if len(out) == 1:
            out = out * length
            break
        out += out[::-1][: min(len(out) - 1, length - len(out))]
    return tuple(out)


def plan_chunks(num_frames: int, frames_per_chunk: int, num_conditional_frames: int) -> list[Chunk]:
    """The chunks of a num_frames video (num_frames already capped by max_frames)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if not 0 <= num_conditional_frames < frames_per_chunk:
        raise ValueError(
            f"num_conditional_frames ({num_conditional_frames}) must be in [0, frames_per_chunk "
            f"({frames_per_chunk}))"
        )
    stride = frames_per_chunk - num_conditional_frames
    if frames_per_chunk == 1 or num_frames <= frames_per_chunk:
        num_chunks = 1
    else:
        num_chunks = 1 + -(-(num_frames - frames_per_chunk) // stride)  # ceil division
    chunks = []
    for i in range(num_chunks):
        start = i * stride
        chunks.append(
            Chunk(
                index=i,
                start=start,
                end=min(start + frames_per_chunk, num_frames),
                cond_frames=0 if i == 0 else num_conditional_frames,
                frames_per_chunk=frames_per_chunk,
            )
        )
    return chunks


def stitch(outputs: list[Tensor], chunks: list[Chunk], num_frames: int, dim: int = 2) -> Tensor:
    """Join per-chunk outputs (frames_per_chunk frames each along `dim`) into the num_frames video."""
    parts = [
        out if c.index == 0 else out.narrow(dim, c.cond_frames, out.shape[dim] - c.cond_frames)
        for out, c in zip(outputs, chunks, strict=True)
    ]
    return torch.cat(parts, dim=dim).narrow(dim, 0, num_frames)


def conditioning_video(previous: Tensor, chunk: Chunk, frames: int | None = None) -> Tensor:
    """The pixel video whose latent conditions `chunk`: (B, 3, T, H, W) in [-1, 1].

    The previous chunk's last cond_frames frames rounded down to uint8 levels (upstream keeps them as
    uint8 between chunks), then black (-1) up to frames_per_chunk. For the first chunk: all black.
    `frames`: only the first `frames` frames of it (what the causal VAE reads), not the whole padded chunk.
    """
    b, c, _, h, w = previous.shape
    frames = chunk.frames_per_chunk if frames is None else frames
    video = previous.new_full((b, c, frames, h, w), -1.0)
    n = min(chunk.cond_frames, frames)
    if n:
        last = previous[:, :, previous.shape[2] - chunk.cond_frames :][:, :, :n]
        as_uint8 = (last * 127.5 + 127.5).clamp(0, 255).to(torch.uint8)
        video[:, :, :n] = as_uint8.to(previous.dtype) / 127.5 - 1.0
    return video


def carried_frames(decoded: Tensor, chunks: list[Chunk], index: int) -> Tensor | None:
    """What of chunk `index`'s decoded video (B, 3, T, H, W) the next chunk reads: its last cond_frames
    frames, copied so that the rest (1 GiB in fp32 at 720p) is freed before the next chunk's steps; None after
    the last chunk."""
    if index + 1 >= len(chunks):
        return None
    n = chunks[index + 1].cond_frames
    return decoded[:, :, decoded.shape[2] - n :].clone()
