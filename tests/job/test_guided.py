"""Guided generation end to end: the mask file, its latent grid, the pipeline's use of it, and bad inputs.

Tiny random-weight models on CPU. The input is 9 random frames of 64 x 64; chunks of 5 frames with one
conditional frame make two chunks ([0, 5) and [4, 9)), so the per-chunk slicing of the mask is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _cli import run_cli

from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import plan_chunks
from cosmos_t2.job.guided import chunk_guide, load_guided_mask
from cosmos_t2.job.record import load_latents
from cosmos_t2.job.run import RunOptions, run_job
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.runtime import pool as model_pool
from cosmos_t2.video import write_video

FRAMES, SIZE = 9, 64
TINY = (64, 64)  # the tiny resolution's 1:1 model size


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.RandomState(0)
    frames = rng.randint(0, 255, (FRAMES, SIZE, SIZE, 3)).astype(np.uint8)
    write_video(tmp_path / "in.mkv", frames, 16, lossless=True)
    left = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    left[:, :, : SIZE // 2] = 255  # left half guided
    write_video(tmp_path / "left.mkv", left, 16, lossless=True)
    write_video(tmp_path / "black.mkv", np.zeros_like(left), 16, lossless=True)
    write_video(tmp_path / "short.mkv", left[:5], 16, lossless=True)
    return tmp_path


def make_spec(folder: Path, **extra: Any) -> Any:
    data = {
        "name": "j", "prompt": "a room", "video_path": "in.mkv", "num_steps": 3, "resolution": "tiny",
        "num_video_frames_per_chunk": 5, "edge": {},
    } | extra  # fmt: skip
    path = folder / "j.json"
    path.write_text(json.dumps(data))
    return load_job(path)


def run_latents(folder: Path, out: str, **extra: Any) -> tuple[list[torch.Tensor], dict[str, Any]]:
    result = run_job(
        make_spec(folder, **extra),
        RunOptions(out_dir=folder / out, tiny=True, latents_only=True, progress=False),
    )
    assert result.latents is not None and result.sidecar is not None
    latents, _ = load_latents(result.latents)
    return latents, json.loads(result.sidecar.read_text())


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built before the inputs were checked")

    monkeypatch.setattr(model_pool, "build_net", refuse)  # where run_job builds networks


# --- the mask and its latent grid ----------------------------------------------------------------------


def upstream_weight_map(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Upstream's `construct_latent_weight_map`, restated: frame 0 alone, then each group of 4 frames, each
    interpolated trilinearly to one latent frame of (h, w)."""
    m = mask[None, None].float()
    parts = [F.interpolate(m[:, :, :1], size=(1, h, w), mode="trilinear", align_corners=False)]
    for start in range(1, m.shape[2], 4):
        parts.append(
            F.interpolate(m[:, :, start : start + 4], size=(1, h, w), mode="trilinear", align_corners=False)
        )
    return torch.cat(parts, dim=2)


def test_chunk_mask_is_the_chunks_frames_on_upstreams_latent_grid() -> None:
    mask = torch.rand(FRAMES, 16, 24)
    chunks = plan_chunks(FRAMES, 5, 1)
    x0 = torch.randn(1, 16, 2, 4, 6)
    for chunk in chunks:
        guide = chunk_guide(mask, chunk, x0, step_threshold=7)
        expected = upstream_weight_map(mask[list(chunk.frame_indices)], 4, 6)
        assert guide.mask.shape == (1, 1, 2, 4, 6) and guide.step_threshold == 7
        assert torch.allclose(guide.mask, expected, atol=1e-6)
        assert torch.equal(guide.x0, x0)
    # the second chunk's window starts at frame 4: its latent frame 0 is mask frame 4 alone
    second = chunk_guide(mask, chunks[1], x0, 0).mask[0, 0, 0]
    assert torch.allclose(second, F.interpolate(mask[4][None, None], size=(4, 6), mode="bilinear")[0, 0])


def test_mask_video_weights_are_channel_0_over_255(folder: Path) -> None:
    spec = make_spec(folder, guided_generation_mask="left.mkv", max_frames=7)
    weights = load_guided_mask(spec, 7, TINY)
    assert weights is not None and weights.shape == (7, *TINY) and weights.dtype == torch.float32
    assert torch.all(weights[:, :, :32] == 1.0) and torch.all(weights[:, :, 32:] == 0.0)


def test_label_array_keeps_only_the_foreground_labels(folder: Path) -> None:
    labels = np.zeros((FRAMES, 32, 32), np.int32)
    labels[:, :, :8], labels[:, :, 8:16], labels[:, :, 16:24] = 1, 2, 3
    np.savez(folder / "labels.npz", labels)
    chosen = load_guided_mask(
        make_spec(folder, guided_generation_mask="labels.npz", guided_generation_foreground_labels=[2]),
        FRAMES,
        TINY,
    )
    any_label = load_guided_mask(make_spec(folder, guided_generation_mask="labels.npz"), FRAMES, TINY)
    assert chosen is not None and any_label is not None and chosen.shape == (FRAMES, *TINY)
    assert torch.all(chosen[:, :, 18:30] == 1.0) and torch.all(chosen[:, :, :14] == 0.0)
    assert torch.all(chosen[:, :, 34:] == 0.0)
    assert torch.all(any_label[:, :, :46] == 1.0) and torch.all(any_label[:, :, 50:] == 0.0)


# --- the pipeline --------------------------------------------------------------------------------------


def test_guided_mask_changes_the_latents_and_a_black_mask_changes_nothing(folder: Path) -> None:
    plain, plain_record = run_latents(folder, "plain")
    guided, record = run_latents(folder, "guided", guided_generation_mask="left.mkv")
    black, black_record = run_latents(folder, "black", guided_generation_mask="black.mkv")
    assert len(plain) == len(guided) == 2
    assert plain_record["guided_generation"] is None
    for p, g, b in zip(plain, guided, black, strict=True):
        assert not torch.allclose(p, g, atol=1e-3)
        assert torch.equal(p, b)  # no guidance anywhere: bit for bit the unguided run
    assert record["guided_generation"] == {
        "mask": str(folder / "left.mkv"), "step_threshold": 25, "guided_steps": 3,
        "foreground_labels": None, "coverage": 0.5,
    }  # fmt: skip
    assert record["sources"]["guided_generation_mask"] == f"file {folder / 'left.mkv'}"
    assert any("black everywhere" in w for w in black_record["warnings"])


def test_each_chunk_samples_with_its_input_latent_and_mask_window(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the sampler gets per chunk: guide.x0 is the chunk's input latent (the same one sigma_max starts
    from, encoded once), the mask its window on the latent grid, the spec's threshold."""
    import cosmos_t2.sampling.unipc as sampling

    calls: list[dict[str, Any]] = []
    real = sampling.sample

    def spy(velocity_fn: Any, noise: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return real(velocity_fn, noise, **kwargs)

    monkeypatch.setattr(sampling, "sample", spy)
    run_latents(
        folder, "spy", guided_generation_mask="left.mkv", guided_generation_step_threshold=1, sigma_max=80
    )
    assert len(calls) == 2
    for kwargs in calls:
        guide = kwargs["guide"]
        assert guide.step_threshold == 1 and guide.mask.shape == (1, 1, 2, 8, 8)
        assert torch.equal(guide.x0, kwargs["init_latent"].float())
        assert torch.all(guide.mask[..., :4] == 1.0) and torch.all(guide.mask[..., 4:] == 0.0)


def test_infer_records_guided_generation_in_the_sidecar(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(folder, guided_generation_mask="left.mkv", guided_generation_step_threshold=0)
    job = folder / "job.json"
    job.write_text(json.dumps(spec.to_dict()))
    out = folder / "cli"
    code, _, err = run_cli(
        ["infer", str(job), "-o", str(out), "--tiny", "--device", "cpu", "--quiet"], capsys
    )
    assert code == 0, err
    record = json.loads((out / "j.json").read_text())
    assert (
        record["guided_generation"]["step_threshold"] == 0
        and record["guided_generation"]["guided_steps"] == 1
    )
    assert (out / "j.mp4").is_file()


# --- bad inputs ----------------------------------------------------------------------------------------

SPEC_ERRORS = [
    ("missing file", {"guided_generation_mask": "nope.mp4"}, "guided_generation_mask", "file or folder not found"),
    ("folder", {"guided_generation_mask": "."}, "guided_generation_mask", "got a folder"),
    ("negative threshold", {"guided_generation_mask": "left.mkv", "guided_generation_step_threshold": -1},
     "guided_generation_step_threshold", "expected an integer in [0, 1000], got -1"),
    ("labels without mask", {"guided_generation_foreground_labels": [1]},
     "guided_generation_foreground_labels", "needs 'guided_generation_mask'"),
    ("labels on a mask video", {"guided_generation_mask": "left.mkv", "guided_generation_foreground_labels": [1]},
     "guided_generation_foreground_labels", "only to a .npz label array"),
    ("empty labels", {"guided_generation_mask": "labels.npz", "guided_generation_foreground_labels": []},
     "guided_generation_foreground_labels", "at least one label"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "key", "expected"), [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS]
)
def test_bad_guided_keys_name_the_spec_file_and_key(
    folder: Path, changes: dict[str, Any], key: str, expected: str
) -> None:
    np.savez(folder / "labels.npz", np.zeros((FRAMES, 8, 8), np.uint8))
    with pytest.raises(CosmosError) as info:
        make_spec(folder, **changes)
    message = str(info.value)
    assert message.startswith(f"{folder / 'j.json'}: key '{key}': "), message
    assert expected in message, message


def _write_bad(folder: Path, name: str) -> str:
    if name == "garbage.mp4":
        (folder / name).write_bytes(b"not a video at all")
    elif name == "no_arr0.npz":
        np.savez(folder / name, labels=np.zeros((FRAMES, 8, 8)))
    elif name == "flat.npz":
        np.savez(folder / name, np.zeros((8, 8)))
    elif name == "garbage.npz":
        (folder / name).write_bytes(b"PK not a zip")
    elif name == "short.npz":
        np.savez(folder / name, np.ones((4, 8, 8), np.uint8))
    return name


BAD_FILES = [
    ("short.mkv", "has 5 frames but the input video has 9"),
    ("short.npz", "has 4 frames but the input video has 9"),
    ("garbage.mp4", "cannot decode video"),
    ("garbage.npz", "cannot read the .npz mask"),
    ("no_arr0.npz", "needs an 'arr_0' array"),
    ("flat.npz", "must be a (T, H, W) array"),
]


@pytest.mark.parametrize(("name", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_mask_files_are_refused_before_any_model_is_built(
    folder: Path, no_models: None, name: str, expected: str
) -> None:
    spec = make_spec(folder, guided_generation_mask=_write_bad(folder, name))
    with pytest.raises(CosmosError) as info:
        run_job(spec, RunOptions(out_dir=folder / "out", tiny=True, progress=False))
    message = str(info.value)
    assert str(folder / name) in message and "guided_generation_mask" in message, message
    assert expected in message, message


def test_the_distilled_model_refuses_guided_generation(folder: Path, no_models: None) -> None:
    from safetensors.torch import save_file

    models = folder / "models"
    models.mkdir()
    save_file({"x": torch.zeros(1)}, models / "edge_distilled.safetensors")
    save_file({"x": torch.zeros(1)}, models / "tokenizer.safetensors")
    spec = make_spec(folder, guided_generation_mask="left.mkv")
    with pytest.raises(
        CosmosError, match="distilled 4-step edge model does not apply guided generation"
    ) as info:
        run_job(spec, RunOptions(out_dir=folder / "out", tiny=True, model_dir=models, progress=False))
    assert "key 'guided_generation_mask'" in str(info.value)
