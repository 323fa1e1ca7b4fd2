"""`render --server` on the tiny model, on CPU, through the real console script: one server serves every
request of the module, and a served stage writes what the command writes in its own process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _serve_env import cli, private_serve_env, status

from cosmos_t2.video import write_video

CPU = ["--tiny", "--device", "cpu"]
# Sidecar keys that hold clocks (the render's own section is compared apart from its seconds).
VOLATILE = {"created_unix", "timings_s", "seconds_per_step", "steady_seconds_per_step", "peak_memory_gib",
            "total_s", "startup_s", "render"}  # fmt: skip


@pytest.fixture(scope="module")
def serve_env() -> Iterator[dict[str, str]]:
    with private_serve_env() as env:
        yield env


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, serve_env: dict[str, str]) -> Path:
    """The latents of one tiny job (a plain `infer --latents-only`), and a file that is no latents file."""
    folder = tmp_path_factory.mktemp("stages")
    frames = np.stack([np.full((64, 64, 3), 10 + 12 * i, dtype=np.uint8) for i in range(17)])
    write_video(folder / "input.mkv", frames, 12.0, lossless=True)
    spec = {"name": "a", "prompt": "a grey ramp", "video_path": "input.mkv", "seed": 1, "edge": {}}
    (folder / "a.json").write_text(json.dumps(spec))
    job = ["infer", "a.json", "-o", "lat", *CPU, "--quiet", "--latents-only",
           "--set", "num_steps=2", "--set", "num_video_frames_per_chunk=9"]  # fmt: skip
    assert cli(job, serve_env, folder).returncode == 0
    (folder / "corrupt.latents.safetensors").write_bytes(b"not a safetensors file")
    return folder


def test_a_served_render_writes_the_bytes_of_a_render_of_its_own(
    folder: Path, serve_env: dict[str, str]
) -> None:
    latents = "lat/a.latents.safetensors"
    for out in ("served/a.mp4", "again/a.mp4"):
        served = cli(["render", latents, "-o", out, *CPU, "--server"], serve_env, folder)
        assert served.returncode == 0, served.stderr
        assert served.stdout.split() == [out]  # the path as the client gave it
    plain = cli(["render", latents, "-o", "plain/a.mp4", *CPU], serve_env, folder)
    assert plain.returncode == 0, plain.stderr
    assert (folder / "served/a.mp4").read_bytes() == (folder / "plain/a.mp4").read_bytes()
    record, expected = (json.loads((folder / d / "a.json").read_text()) for d in ("served", "plain"))
    assert {k: v for k, v in record.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    assert record["render"].pop("seconds") > 0 and expected["render"].pop("seconds") > 0
    assert record["render"] == expected["render"]  # the latents as given, not the server's absolute path
    assert record["render"]["latents"] == latents
    state = status(serve_env, folder)
    assert state["served"]["render"] >= 2 and state["builds"]["vae"] == 1  # kept between renders


@pytest.mark.parametrize("latents", ["missing.latents.safetensors", "corrupt.latents.safetensors"])
def test_a_served_render_of_bad_latents_is_the_renders_one_line_error(
    latents: str, folder: Path, serve_env: dict[str, str]
) -> None:
    served = cli(["render", latents, "-o", "bad/a.mp4", *CPU, "--server"], serve_env, folder)
    plain = cli(["render", latents, "-o", "bad/a.mp4", *CPU], serve_env, folder)
    assert served.returncode == plain.returncode == 2
    assert served.stderr.strip() == plain.stderr.strip()
    assert served.stderr.strip().startswith(f"error: {latents}") and served.stderr.count("\n") == 1
    assert not (folder / "bad").exists() or not any((folder / "bad").iterdir())  # nothing half written
    assert status(serve_env, folder)["running"]  # the server serves on


def test_a_served_prompt_writes_the_embeddings_of_a_run_of_its_own(
    folder: Path, serve_env: dict[str, str]
) -> None:
    """The served encoder is kept between requests: built once, whether the cache hits or misses."""
    for out, cache in (
        ("served/a.safetensors", ["--no-cache"]),
        ("cached/a.safetensors", ["--cache-dir", "c"]),
    ):
        served = cli(["encode-prompt", "a.json", "-o", out, *CPU, *cache, "--server"], serve_env, folder)
        assert served.returncode == 0, served.stderr
        assert served.stdout.startswith(
            f"{out} (tiny random text encoder, "
        )  # as given, as its own run shows
    plain = cli(
        ["encode-prompt", "a.json", "-o", "plain/a.safetensors", *CPU, "--no-cache"], serve_env, folder
    )
    assert plain.returncode == 0, plain.stderr
    embeddings = {d: (folder / d / "a.safetensors").read_bytes() for d in ("served", "cached", "plain")}
    assert embeddings["served"] == embeddings["plain"] == embeddings["cached"]
    assert any((folder / "c").rglob("*.safetensors"))  # the client's cache folder, not the server's
    state = status(serve_env, folder)
    assert state["served"]["encode-prompt"] >= 2 and state["builds"]["text_encoder"] == 1
    missing = cli(["encode-prompt", "nope.json", "-o", "x.safetensors", *CPU, "--server"], serve_env, folder)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: nope.json: spec file not found"


def test_the_servers_7b_encoder_loads_on_a_miss_only_and_gives_way_on_a_gpu(
    folder: Path, tmp_path: Path
) -> None:
    """A folder's encoder is kept unloaded: prompts the cache holds never load it (nothing counted as built),
    and one kept for a GPU is dropped for the next diffuse or render request. No CUDA is touched: the
    encoder of a folder loads only in its first `encode`."""
    import torch

    from cosmos_t2.jobspec.load import load_job
    from cosmos_t2.model.text import MAX_LENGTH, EmbeddingCache
    from cosmos_t2.runtime.pool import ModelPool
    from cosmos_t2.service.prompt import PromptArgs, PromptEncoders, run_encode_prompt

    weights = tmp_path / "text_encoder"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 4}))
    pool = ModelPool()
    encoders = PromptEncoders(pool)
    on_cpu = encoders.get(tiny=False, text_encoder_dir=weights, device="cpu")
    spec = load_job(folder / "a.json")
    cache = EmbeddingCache(tmp_path / "cache")
    for prompt in (spec.prompt, spec.negative_prompt):
        cache.put(on_cpu, prompt, torch.ones(MAX_LENGTH, 8))
    shown: list[str] = []
    args = PromptArgs(folder / "a.json", tmp_path / "a.safetensors", text_encoder_dir=weights,
                      cache_dir=tmp_path / "cache", device="cpu")  # fmt: skip
    run_encode_prompt(args, events=lambda event: shown.append(event.text), encoders=encoders)
    assert shown == [f"{args.out} ({weights}, {MAX_LENGTH} tokens x 8 channels)"]
    assert pool.builds["text_encoder"] == 0  # every prompt was cached: the 7B model never loaded
    on_gpu = encoders.get(tiny=False, text_encoder_dir=weights, device="cuda")
    assert encoders.get(tiny=False, text_encoder_dir=weights, device="cuda") is on_gpu  # kept
    assert encoders.release_gpu() == 1
    assert encoders.get(tiny=False, text_encoder_dir=weights, device="cpu") is on_cpu  # host memory: kept
    assert encoders.get(tiny=False, text_encoder_dir=weights, device="cuda") is not on_gpu
