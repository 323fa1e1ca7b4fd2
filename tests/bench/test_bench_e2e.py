"""`cosmos-t2 bench --e2e`: whole jobs through infer's path, on random weights written to a model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _cli import run_cli

import cosmos_t2.bench.e2e as e2e_bench
import cosmos_t2.bench.step as bench_step
from cosmos_t2.bench.e2e import E2EOptions, write_prompt_embeddings, write_random_models
from cosmos_t2.bench.step import PRESETS, BenchOptions
from cosmos_t2.job.conditioning import check_prompt_embeddings
from cosmos_t2.job.settings import distilled_settings, effective_spec
from cosmos_t2.jobspec.job import DEFAULT_NUM_STEPS
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.runtime.build import build_net
from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS
from cosmos_t2.weights.locate import locate_models


def test_tiny_e2e_on_cpu_prints_the_stages_and_a_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e2e.json"
    code, stdout, stderr = run_cli(
        ["bench", "--e2e", "--preset", "tiny", "--device", "cpu", "--steps", "2", "--json-out", str(out)],
        capsys,
    )
    assert code == 0
    assert "vae_encode" in stdout and "diffusion" in stdout and "s / step" in stdout
    assert "total:" in stdout.splitlines()[-2]
    # the outputs went with their temporary folder: no line names a path that is gone
    assert stdout.splitlines()[-1].startswith("outputs: deleted with their temporary folder")
    assert "cosmos-t2-e2e-" not in stdout + stderr
    assert "done e2e_0: (temporary, deleted after the benchmark) in" in stderr
    assert "style reference" not in stderr  # no style image, no such stage
    result = json.loads(out.read_text())
    (job,) = result["jobs"]
    assert (
        job["steps"] == 2
        and job["steady_seconds_per_step"] > 0
        and job["total_s"] > 0
        and job["timings_s"]["diffusion"] > 0
    )
    assert job["acceleration"]["compile"] is False  # CPU: infer's default path
    assert result["builds"]["net"] == 1


def test_random_model_folder_is_what_infer_loads(repo_root: Path, tmp_path: Path) -> None:
    """Official key layout: the strict loader takes it; the distilled file is recognised by its name."""
    folder = write_random_models(tmp_path / "m", ["edge"], tiny=True, distilled=True,
                                 device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    files = locate_models(folder, ["edge"], tiny=True, need_text_encoder=False, need_image_encoder=False)
    assert files.distilled and files.checkpoints["edge"].name == "edge_distilled.safetensors"
    net, distilled = build_net(files, ["edge"], tiny=True, device=torch.device("cpu"), dtype=torch.float32)
    assert distilled and net.num_control_branches == 1

    two = write_random_models(tmp_path / "two", ["edge", "depth"], tiny=True, distilled=False,
                              device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    files = locate_models(
        two, ["edge", "depth"], tiny=True, need_text_encoder=False, need_image_encoder=False
    )
    net, _ = build_net(files, ["edge", "depth"], tiny=True, device=torch.device("cpu"), dtype=torch.float32)
    assert net.num_control_branches == 2

    embeddings = write_prompt_embeddings(tmp_path / "p.safetensors", tiny=True, dtype=torch.float32)
    pos, neg = check_prompt_embeddings(
        embeddings, load_job(repo_root / "examples/robot/edge.json"), tiny=True
    )
    assert pos.shape == neg.shape == (1, 512, pos.shape[-1])


def test_kept_model_folder_is_reused_only_for_the_same_arguments(tmp_path: Path) -> None:
    """`--work-dir` kept between runs: the finished folder is used as it is; other arguments rewrite it."""
    cpu, fp32 = torch.device("cpu"), torch.float32
    folder = write_random_models(tmp_path / "m", ["edge"], tiny=True, distilled=False, device=cpu, dtype=fp32)
    weights = folder / "edge.safetensors"
    written = weights.stat().st_mtime_ns
    write_random_models(folder, ["edge"], tiny=True, distilled=False, device=cpu, dtype=fp32)
    assert weights.stat().st_mtime_ns == written

    write_random_models(folder, ["edge", "depth"], tiny=True, distilled=False, device=cpu, dtype=fp32)
    assert weights.stat().st_mtime_ns != written
    assert (folder / "depth.safetensors").samefile(weights)

    (folder / "tokenizer.safetensors").unlink()  # an unfinished folder is written again
    write_random_models(folder, ["edge", "depth"], tiny=True, distilled=False, device=cpu, dtype=fp32)
    assert (folder / "tokenizer.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "steps"),
    [(["--steps", str(DEFAULT_NUM_STEPS)], DEFAULT_NUM_STEPS), (["--steps", "7"], 7), ([], None)],
)
def test_e2e_steps_reach_the_options_as_given_and_none_when_absent(
    args: list[str], steps: int | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # an explicit 35 is asked for (with --distilled it runs 35, not the distilled model's 4); absent is None
    seen: list[E2EOptions] = []
    monkeypatch.setattr(e2e_bench, "run_e2e", lambda opts: seen.append(opts) or {})
    monkeypatch.setattr(e2e_bench, "print_e2e", lambda result: None)
    code, _, stderr = run_cli(
        ["bench", "--e2e", "--distilled", "--preset", "tiny", "--device", "cpu", *args], capsys
    )
    assert code == 0, stderr
    assert [o.steps for o in seen] == [steps] and seen[0].distilled


@pytest.mark.parametrize(
    ("steps", "runs"), [(DEFAULT_NUM_STEPS, DEFAULT_NUM_STEPS), (None, DISTILLED_NUM_STEPS)]
)
def test_the_distilled_e2e_job_runs_an_explicit_35_steps_and_its_own_count_otherwise(
    steps: int | None, runs: int, tmp_path: Path
) -> None:
    opts = E2EOptions(preset="tiny", device="cpu", distilled=True, steps=steps)
    (spec,) = e2e_bench._synthetic_specs(opts, tmp_path, PRESETS["tiny"])
    assert distilled_settings(effective_spec(spec, tiny=True)).spec.num_steps == runs


def test_the_step_benchmark_projects_the_spec_default_when_steps_is_absent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[BenchOptions] = []
    monkeypatch.setattr(bench_step, "run_bench_cli", lambda opts, json_out: seen.append(opts))
    code, _, stderr = run_cli(["bench", "--preset", "tiny", "--device", "cpu"], capsys)
    assert code == 0, stderr
    assert [o.steps for o in seen] == [DEFAULT_NUM_STEPS]
    help_code, help_text, _ = run_cli(["bench", "--help"], capsys)
    assert help_code == 0
    # the help spells out the distilled count (importing it would import torch at the CLI's start)
    assert f"distilled model's {DISTILLED_NUM_STEPS}" in " ".join(help_text.replace("│", " ").split())
