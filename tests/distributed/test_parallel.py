"""Context and CFG parallelism on gloo CPU processes: exact attention over a split sequence,
torchrun relaunch, rank-0-only writes and failure propagation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from parallel_worker import run_all, run_ranks, sdpa, tiny_inputs, tiny_net, vae_latents, velocities

from cosmos_t2.distributed.attention import sequence_parallel_attention
from cosmos_t2.distributed.context import (
    ParallelContext,
    SequenceShard,
    init_distributed,
    map_over_ranks,
    split_frames,
)
from cosmos_t2.distributed.launch import maybe_relaunch_under_torchrun, run_torchrun
from cosmos_t2.distributed.net import ParallelNet, cfg_pair
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.vae import VAEConfig, build_vae

WORKER = str(Path(__file__).resolve().parents[1] / "parallel_worker.py")

# (frames, tokens per frame, heads): frames not a multiple of the world size, odd tokens per frame,
# one frame for four ranks (three ranks hold only padding), and 3 heads (ring attention, since 3
# heads do not split over 2 or 4 ranks).
CASES = [(3, 5, 4), (5, 3, 4), (1, 7, 4), (3, 5, 3), (6, 4, 2)]


# Tiny network with 2 heads (Ulysses on 2 ranks, ring on 4) and with 4 heads (Ulysses on both).
HEADS = (2, 4)


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"{n}ranks")
def ranks(request: pytest.FixtureRequest) -> dict:
    """One spawn of gloo ranks per world size runs every distributed check; rank 0's results."""
    return run_ranks(request.param, run_all, HEADS, CASES)


def test_sharded_attention_matches_full_attention(ranks: dict) -> None:
    # fp32; the only differences are summation order inside attention.
    errors = ranks["attention"]
    assert len(errors) == 2 * len(CASES)
    assert max(errors.values()) <= 1e-5, errors


@pytest.mark.parametrize("cfg_parallel", [False, True], ids=["cp", "cp+cfg"])
@pytest.mark.parametrize("heads", HEADS)
def test_denoiser_matches_one_process(ranks: dict, heads: int, cfg_parallel: bool) -> None:
    # 3 latent frames of 9 tokens: 27 tokens split over 2 or 4 ranks (frames padded to 4).
    inputs = tiny_inputs()
    expected = velocities(tiny_net(heads), ParallelContext(), inputs)
    got = ranks["denoiser"][f"heads={heads} cfg_parallel={cfg_parallel}"]
    assert got.shape == expected.shape == (2, *inputs["x"].shape)
    assert not torch.equal(expected[0], expected[1])  # the two CFG passes really differ
    # fp32, tolerance 1e-5 as the issue asks; attention sums in a different order across ranks.
    assert (got - expected).abs().max().item() <= 1e-5


def test_independent_vae_decodes_split_over_ranks(ranks: dict) -> None:
    # Each decode is whole on one rank (a causal decode carries its cache through every frame, so
    # only independent decodes split exactly): bit-identical to decoding here.
    vae = build_vae(VAEConfig.tiny())
    expected = [vae.decode(z) for z in vae_latents()]
    assert len(ranks["vae"]) == len(expected)
    for got, want in zip(ranks["vae"], expected, strict=True):
        assert torch.equal(got, want)


def test_world_size_one_is_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert ctx == ParallelContext() and not ctx.distributed
    shard = SequenceShard.of(3, ctx)
    x = torch.randn(2, 15, 4, 8)
    assert split_frames(x, shard) is x
    calls = []

    def attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(q)
        return sdpa(q, k, v)

    out = sequence_parallel_attention(shard, ctx, attn)(x, x, x)
    assert calls[0] is x and torch.equal(out, sdpa(x, x, x))
    assert cfg_pair(ctx, lambda: x, lambda: -x)[1].equal(-x)
    net, inputs = tiny_net(2), tiny_inputs()
    assert torch.equal(velocities(ParallelNet(net, ctx), ctx, inputs), velocities(net, ctx, inputs))
    assert map_over_ranks(ctx, [1, 2, 3], lambda i: i * 10) == [10, 20, 30]


def test_split_pads_frames_to_the_world_size() -> None:
    x = torch.arange(3 * 4).reshape(1, 12)  # 3 frames x 4 tokens
    parts = [split_frames(x, SequenceShard(frames=3, size=2, rank=r)) for r in range(2)]
    assert [p.tolist() for p in parts] == [[list(range(8))], [[8, 9, 10, 11, 0, 0, 0, 0]]]
    per_frame = torch.tensor([10, 11, 12])  # per-frame tensors split the same way
    assert split_frames(per_frame, SequenceShard(frames=3, size=2, rank=1), dim=0).tolist() == [12, 0]
    with pytest.raises(ValueError, match="whole number"):
        split_frames(torch.zeros(1, 10), SequenceShard(frames=3, size=2, rank=0))


def test_failing_rank_ends_the_job_with_its_message() -> None:
    start = time.monotonic()
    with pytest.raises(CosmosError) as info:
        run_torchrun(2, [WORKER, "fail"], device="cpu")
    # Rank 0 sits in a barrier with a 15-minute timeout; the agent must stop it at once.
    assert time.monotonic() - start < 60
    assert str(info.value) == "rank 1 failed: out/x.mp4: rank one broke: disk full"


def test_worker_records_a_user_error_for_the_launcher(tmp_path: Path) -> None:
    """A worker is the normal CLI; its CosmosError lands in torchrun's error file and exits 2."""
    error_file = tmp_path / "error.json"
    env = {**os.environ, "TORCHELASTIC_ERROR_FILE": str(error_file), "RANK": "3"}
    missing = tmp_path / "missing.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cosmos_t2.worker", "validate", str(missing)],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == 2
    info = json.loads(error_file.read_text())["cosmos_t2"]
    assert info["rank"] == 3 and str(missing) in info["message"] and info["user_error"]


def _has_infer() -> bool:
    from typer.main import get_command

    from cosmos_t2.cli import app

    return "infer" in get_command(app).commands  # type: ignore[attr-defined]


@pytest.mark.determinism
@pytest.mark.skipif(not _has_infer(), reason="`cosmos-t2 infer` (pipeline stage) has not landed yet")
def test_infer_on_two_cpu_processes_matches_one(tmp_path: Path, repo_root: Path) -> None:
    """The user's path: `infer --gpus 2` re-launches itself under torchrun (gloo); with guidance the
    pipeline runs the two CFG passes on the two ranks. Same latents as one process, one writer."""
    from safetensors.torch import load_file, save_file

    # Random prompt embeddings (equal inputs are all the comparison needs) skip the text encoder;
    # 2 steps on 5 frames keep the two runs short.
    gen = torch.Generator().manual_seed(0)
    embeddings = tmp_path / "prompts.safetensors"
    save_file({k: torch.randn(1, 16, 64, generator=gen) for k in ("prompt", "negative_prompt")}, embeddings)
    spec = repo_root / "examples" / "robot" / "edge.json"
    outputs = {}
    for gpus in (1, 2):
        out = tmp_path / f"gpus{gpus}"
        cmd = [sys.executable, "-m", "cosmos_t2.cli", "infer", str(spec), "-o", str(out), "--tiny", "--quiet"]
        cmd += [
            "--device",
            "cpu",
            "--gpus",
            str(gpus),
            "--latents-only",
            "--prompt-embeddings",
            str(embeddings),
        ]
        cmd += ["--set", "num_steps=2", "--set", "max_frames=5"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs[gpus] = out
    names = sorted(p.name for p in outputs[2].rglob("*") if p.is_file())
    assert names == sorted(p.name for p in outputs[1].rglob("*") if p.is_file())  # rank 0 alone wrote
    latents = [p for p in names if p.endswith(".latents.safetensors")]
    assert len(latents) == 1, names
    one, two = (load_file(next(outputs[g].rglob(latents[0]))) for g in (1, 2))
    assert one.keys() == two.keys()
    for key in one:  # bit for bit: with the CPU pins (cosmos_t2.reproducible) a batch of 2 sums as 2 of 1
        assert torch.equal(one[key], two[key]), (key, (one[key] - two[key]).abs().max().item())
    sidecar = json.loads((outputs[2] / latents[0].replace(".latents.safetensors", ".json")).read_text())
    assert sidecar["device"]["processes"] == 2


def test_relaunch_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert maybe_relaunch_under_torchrun(1, "cpu", ["infer"]) is False
    with pytest.raises(CosmosError, match="at least 1"):
        maybe_relaunch_under_torchrun(0, "cpu", [])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert maybe_relaunch_under_torchrun(2, "cpu", ["infer"]) is False  # already a rank: do the work
    with pytest.raises(CosmosError, match="torchrun started 2"):
        maybe_relaunch_under_torchrun(4, "cpu", [])
