"""`cosmos-t2 bench --sweep`: the real Snakemake workflow timed per job, on CPU with the tiny model here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from _cli import run_cli
from safetensors import safe_open

from cosmos_t2.bench.sweep import SweepOptions, check_options, prefill_cache, prompt_encoder
from cosmos_t2.bench.sweep_rows import collect_result, covered
from cosmos_t2.errors import CosmosError
from cosmos_t2.model import text_folder
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.text import EmbeddingCache, read_prompt_embeddings
from cosmos_t2.model.text_folder import FolderEncoder


def test_a_tiny_sweep_through_snakemake_gives_a_row_per_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The smallest grid with two jobs (one spec, two weights, two steps) through the real workflow."""
    work, out = tmp_path / "work", tmp_path / "sweep.json"
    args = ["bench", "--sweep", "--device", "cpu", "--specs", "1", "--control-weights", "0.5,1",
            "--steps", "2", "--work-dir", str(work), "--json-out", str(out)]  # fmt: skip
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr + stdout
    result = json.loads(out.read_text())
    assert result["options"]["preset"] == "tiny" and result["hardware_label"] == "cpu-local"
    assert "--profile" in result["command"] and str(Path("profiles") / "local") in " ".join(result["command"])
    summary, jobs = result["summary"], result["jobs"]
    assert summary["jobs"] == 2 and sorted(j["control_weight"] for j in jobs) == [0.5, 1.0]
    for job in jobs:
        assert job["steps"] == 2 and 0 < job["steps_s"] < job["wall_s"] <= summary["sweep_wall_s"]
        assert job["overhead_s"] == pytest.approx(job["wall_s"] - job["steps_s"], abs=1e-2)
        assert 0 <= job["started_s"] < job["finished_s"] <= summary["sweep_wall_s"]
        # every rule the job went through, its shared stages' specs included
        assert {"spec", "decode", "controls", "prompt", "diffuse", "encode", "spec:decode"} <= set(
            job["rules_s"]
        )
    assert summary["first_video_s"] == min(j["finished_s"] for j in jobs)
    steps = sum(j["steps_s"] for j in jobs)
    assert summary["overhead_per_job_s"] == pytest.approx((summary["sweep_wall_s"] - steps) / 2, abs=1e-2)
    assert summary["jobs_per_hour"] == pytest.approx(7200 / summary["sweep_wall_s"], rel=1e-2)
    assert 0 < summary["outside_rules_s"] < summary["sweep_wall_s"]
    rules = result["rules"]
    assert rules["diffuse"]["jobs"] == rules["encode"]["jobs"] == 2 and rules["decode"]["jobs"] == 1
    assert rules["report"]["jobs"] == 1  # the whole workflow ran, its report too

    # the prompt rule took its embeddings from the pre-filled cache, not from the tiny encoder
    run = work / "results" / "cpu-local"
    (prompt_file,) = (run / "prompts").glob("*.safetensors")
    prompt, _, meta = read_prompt_embeddings(prompt_file)
    cached = {}
    for entry in (work / "cache" / "text-embeddings").glob("*.safetensors"):
        with safe_open(str(entry), framework="pt") as f:
            cached[(f.metadata() or {})["prompt"]] = f.get_tensor("embedding")
    assert len(cached) == 2 and torch.equal(prompt[0], cached[meta["prompt"]])

    assert "cosmos-t2 bench --sweep on cpu (tiny, cpu-local)" in stdout
    assert (
        sum(line.startswith("│ sweep_0 ") for line in stdout.splitlines()) == 2
        and "jobs/hour" in stdout
        and f"run folder: {work}" in stdout
    )


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        (SweepOptions(preset="huge", device="cpu"), "--preset"),
        (SweepOptions(preset="720p93", device="cpu"), "--preset"),  # full size on CPU: hours
        (SweepOptions(device="cpu", specs=0), "--specs"),
        (SweepOptions(device="cpu", control_weights=()), "--control-weights"),
        (SweepOptions(device="cpu", control_weights=(0.5, 1.5)), "--control-weights"),
        (SweepOptions(device="cpu", control_weights=(0.5, 0.5)), "--control-weights"),
        (SweepOptions(device="cpu", steps=0), "--steps"),
        (SweepOptions(device="cpu", distilled=True), "--distilled"),
        (SweepOptions(device="tpu"), "--device"),
    ],
)
def test_bad_options_are_refused_before_any_work(opts: SweepOptions, key: str) -> None:
    with pytest.raises(CosmosError) as info:
        check_options(opts)
    assert info.value.key == key


def test_cli_refuses_sweep_with_e2e_and_bad_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["bench", "--sweep", "--e2e", "--device", "cpu"], capsys)
    assert code == 2 and "--sweep and --e2e" in err
    code, _, err = run_cli(["bench", "--sweep", "--device", "cpu", "--control-weights", "0.5,high"], capsys)
    assert code == 2 and "comma-separated numbers" in err
    assert not list(tmp_path.iterdir())


def test_a_cached_prompt_never_loads_the_encoder_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Reason1 folder with only config.json: the identity and channels come from it, the weights are never
    needed while every prompt is cached (full size: the official 28 x 3584 channels)."""
    full = prompt_encoder(tmp_path / "reason1", tiny=False)
    assert full.dim == TransferConfig.full_2b().crossattn_proj_in_channels
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"text_config": {"num_hidden_layers": 2, "hidden_size": 8}})
    )
    (tmp_path / "in.mp4").write_bytes(b"")
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps({"prompt": "a box", "negative_prompt": "blur", "video_path": "in.mp4", "edge": {}})
    )
    cache = EmbeddingCache(tmp_path / "cache")
    assert prefill_cache(cache, FolderEncoder(folder, device="cpu", dtype=torch.float32), ["a box", "blur"],
                         torch.float32) == 2  # fmt: skip
    loads: list[Path] = []

    class Loaded:
        def encode(self, prompts: list[str]) -> torch.Tensor:
            return torch.zeros(len(prompts), 512, 16)

    def from_dir(path: Path, **_: object) -> Loaded:
        loads.append(Path(path))
        return Loaded()

    monkeypatch.setattr(text_folder.PromptEncoder, "from_dir", from_dir)
    out = tmp_path / "emb.safetensors"
    args = ["encode-prompt", str(job), "-o", str(out), "--text-encoder-dir", str(folder), "--device", "cpu",
            "--cache-dir", str(cache.directory)]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"({folder}, 512 tokens x 16 channels)" in stdout
    prompt, negative, meta = read_prompt_embeddings(out)
    assert prompt.shape == negative.shape == (1, 512, 16) and meta["encoder_label"] == str(folder)
    assert loads == [] and torch.equal(
        prompt[0], cache.get(FolderEncoder(folder, device="cpu", dtype=torch.float32), "a box")
    )
    # a prompt the cache misses does load the folder's model, once
    job.write_text(
        json.dumps({"prompt": "another", "negative_prompt": "grain", "video_path": "in.mp4", "edge": {}})
    )
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert loads == [folder]


def test_rows_from_a_run_folder(tmp_path: Path) -> None:
    """Rule starts are the benchmark file's time less its seconds; a job's wall runs to its mp4."""
    run = tmp_path / "results" / "local-gpu"
    job = {"key": "k" * 16, "name": "a", "spec_file": "a.json", "settings": {"control_weight": 0.5},
           "paths": {"video": "videos/k/a.mp4", "diffuse_sidecar": "diffuse/k/a.json"},
           "benchmarks": {"spec": "job-kk", "decode": "d1", "diffuse": "k/a", "encode": "k/a"}}  # fmt: skip
    (run).mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"jobs": [job]}))
    t0 = 1_000_000.0
    ends = {("spec", "job-kk"): (t0 + 2, 1.0), ("spec", "decode-d1"): (t0 + 1, 1.0), ("decode", "d1"): (t0 + 4, 2.0),
            ("diffuse", "k/a"): (t0 + 20, 15.0), ("encode", "k/a"): (t0 + 25, 5.0)}  # fmt: skip
    for (rule, key), (end, seconds) in ends.items():
        path = run / "benchmarks" / rule / f"{key}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t1.0\n")
        os.utime(path, (end, end))
    for rel, text in (
        ("videos/k/a.mp4", "mp4"),
        ("diffuse/k/a.json", json.dumps({"steps": 4, "timings_s": {"diffusion": 9.0}})),
    ):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    os.utime(run / "videos/k/a.mp4", (t0 + 25, t0 + 25))
    result = collect_result(tmp_path / "results", started_at=t0 - 5, wall_s=40.0)
    (row,) = result["jobs"]
    assert row["started_s"] == 5.0 and row["finished_s"] == 30.0  # from spec:decode's start to the mp4
    assert row["wall_s"] == 25.0 and row["steps_s"] == 9.0 and row["overhead_s"] == 16.0 and row["steps"] == 4
    assert row["rules_s"]["spec:decode"] == 1.0 and row["rules_s"]["diffuse"] == 15.0
    assert result["rules"]["spec"] == {"jobs": 2, "seconds": 2.0}
    summary = result["summary"]
    # the rules ran 0-4 and 5-25 (s after t0): 24 s of the 40 had one running
    assert summary["outside_rules_s"] == 16.0 and summary["overhead_per_job_s"] == 31.0
    assert summary["jobs_per_hour"] == 90.0 and result["hardware_label"] == "local-gpu"


def test_overlapping_rules_are_counted_once() -> None:
    assert covered([(0, 4), (1, 2), (3, 6), (10, 11)]) == 7
