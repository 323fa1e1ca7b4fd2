"""Chunk planning and stitching on frame indices: every frame exactly once, in order."""

from __future__ import annotations

import pytest
import torch

from cosmos_t2.job.chunking import (
    Chunk,
    carried_frames,
    conditioning_video,
    padded_indices,
    plan_chunks,
    stitch,
)


def _run_on_indices(num_frames: int, per_chunk: int, cond: int) -> tuple[list[Chunk], torch.Tensor]:
    """Generate a "video" whose pixel values are source frame indices, chunk by chunk.

    Each chunk's generated frames are its window's source indices, except that the conditioning
    frames come from the previous chunk's output, as in the real loop.
    """
    chunks = plan_chunks(num_frames, per_chunk, cond)
    outputs: list[torch.Tensor] = []
    for chunk in chunks:
        window = torch.tensor(chunk.frame_indices, dtype=torch.float32).view(1, 1, -1, 1, 1)
        if chunk.cond_frames:
            carried = outputs[-1][:, :, per_chunk - chunk.cond_frames :]
            assert torch.equal(carried, window[:, :, : chunk.cond_frames]), "carried frames must match"
        outputs.append(window)
    return chunks, stitch(outputs, chunks, num_frames)


@pytest.mark.parametrize(
    ("num_frames", "per_chunk", "cond"),
    [(9, 5, 1), (13, 5, 2), (10, 5, 0), (93, 93, 1), (100, 93, 1), (200, 93, 2), (3, 5, 1), (1, 5, 1)],
)
def test_stitched_video_has_every_frame_once_in_order(num_frames: int, per_chunk: int, cond: int) -> None:
    _, video = _run_on_indices(num_frames, per_chunk, cond)
    assert video.flatten().tolist() == list(range(num_frames))


def test_two_chunks_at_the_tiny_chunk_length() -> None:
    # 9 frames, 5 a chunk, 1 carried: chunk 1 starts on chunk 0's last frame.
    chunks = plan_chunks(9, 5, 1)
    assert [(c.start, c.end, c.cond_frames) for c in chunks] == [(0, 5, 0), (4, 9, 1)]
    assert [c.cond_latent_frames for c in chunks] == [0, 1]
    assert chunks[1].frame_indices == (4, 5, 6, 7, 8)


def test_official_chunk_counts() -> None:
    # 1 + ceil((total - 93) / (93 - cond)) chunks once the video is longer than one chunk.
    assert len(plan_chunks(93, 93, 1)) == 1
    assert len(plan_chunks(94, 93, 1)) == 2
    assert len(plan_chunks(185, 93, 1)) == 2
    assert len(plan_chunks(186, 93, 1)) == 3
    assert len(plan_chunks(121, 93, 2)) == 2
    assert [c.cond_latent_frames for c in plan_chunks(200, 93, 2)] == [0, 1, 1]


def test_last_window_is_mirrored_past_the_end() -> None:
    last = plan_chunks(100, 93, 1)[-1]
    assert (last.start, last.end) == (92, 100)
    idx = last.frame_indices
    assert len(idx) == 93 and idx[:8] == tuple(range(92, 100))
    assert idx[8:15] == (99, 98, 97, 96, 95, 94, 93)  # mirrored, last frame first
    assert set(idx) <= set(range(92, 100))


def test_padding_rules() -> None:
    assert padded_indices([0, 1, 2], 5) == (0, 1, 2, 2, 1)
    assert padded_indices([7], 4) == (7, 7, 7, 7)
    assert padded_indices([0, 1], 6) == (0, 1, 1, 1, 1, 1)  # mirrors the grown sequence each round


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_chunks(10, 5, 5)
    with pytest.raises(ValueError):
        plan_chunks(0, 5, 1)


def test_conditioning_video_carries_last_frames_as_uint8() -> None:
    chunk = plan_chunks(9, 5, 2)[1]
    previous = torch.linspace(-1, 1, 5).view(1, 1, 5, 1, 1).expand(1, 3, 5, 2, 2).contiguous()
    video = conditioning_video(previous, chunk)
    assert video.shape == (1, 3, 5, 2, 2)
    expected = torch.floor(previous[:, :, 3:] * 127.5 + 127.5) / 127.5 - 1
    assert torch.allclose(video[:, :, :2], expected)
    assert (video[:, :, 2:] == -1).all()
    assert (conditioning_video(previous, plan_chunks(9, 5, 2)[0]) == -1).all()


@pytest.mark.parametrize("cond", [0, 1, 2])
def test_carried_frames_keep_only_what_the_next_chunk_reads(cond: int) -> None:
    chunks = plan_chunks(13, 5, cond) if cond else plan_chunks(10, 5, 0)
    decoded = torch.rand(1, 3, 5, 4, 6) * 2 - 1
    carried = carried_frames(decoded, chunks, 0)
    assert carried is not None and carried.shape[2] == cond
    assert carried.untyped_storage().data_ptr() != decoded.untyped_storage().data_ptr()  # the rest can go
    assert torch.equal(conditioning_video(carried, chunks[1]), conditioning_video(decoded, chunks[1]))
    assert carried_frames(decoded, chunks, len(chunks) - 1) is None


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_conditioning_video_builds_only_the_frames_asked_for(frames: int) -> None:
    chunk = plan_chunks(9, 5, 2)[1]
    previous = torch.rand(1, 3, 5, 2, 2) * 2 - 1
    assert torch.equal(
        conditioning_video(previous, chunk, frames), conditioning_video(previous, chunk)[:, :, :frames]
    )
