"""GPU slots in the workflow's shell lines (dry runs): a local CUDA sweep over N > 1 GPUs runs each one-GPU
stage as `cosmos-t2 --gpu-slots N`; CPU stages and a cluster's jobs stay as they were.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_workflow_dag import REPO, snakemake, write_sweep

GPU_COMMANDS = ("controls", "encode-prompt", "infer", "render")  # the GPU stages of this sweep
CPU_COMMANDS = ("decode", "report")


def shell_lines(folder: Path, *args: str) -> list[str]:
    out = snakemake(folder, *args, "--dry-run", "--printshellcmds")
    return re.findall(r"^\s*(?:Shell command: )?((?:cosmos-t2|torchrun) .*)$", out, flags=re.M)


def commands(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if f" {name} " in line and "cosmos-t2 sweep:" not in line]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    write_sweep(tmp_path)
    return tmp_path


def test_two_local_gpus_give_each_gpu_job_a_slot_of_two(sweep_dir: Path) -> None:
    lines = shell_lines(sweep_dir, "--profile", str(REPO / "profiles" / "local-gpu"), "--resources", "gpu=2")
    for name in GPU_COMMANDS:
        found = commands(lines, name)
        assert found and all(line.startswith(f"cosmos-t2 --gpu-slots 2 {name} ") for line in found), name
    # one server per GPU: the diffusion jobs still go to `--server` (the slot picks which one)
    assert all("--server " in line for line in commands(lines, "infer"))
    for name in CPU_COMMANDS:
        found = commands(lines, name)
        assert found and all(line.startswith(f"cosmos-t2 {name} ") for line in found), name


def test_no_slots_for_a_cluster_s_jobs(sweep_dir: Path) -> None:
    """SLURM gives each allocation its own GPUs. (A torchrun job takes no slot either: its ranks use the GPUs
    torchrun saw; test_workflow_dag's local-gpu dry run checks its line.)"""
    profile = str(REPO / "profiles" / "slurm-h100")
    lines = shell_lines(sweep_dir, "--executor", "slurm", "--profile", profile, "--resources", "gpu=2")
    assert len(commands(lines, "infer")) == 4 and not any("--gpu-slots" in line for line in lines)
