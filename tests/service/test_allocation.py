"""The server inside a SLURM allocation, without a cluster: its address names the allocation (and its GPU),
its folder falls back to /tmp where a batch job has no runtime folder, and the command that starts it is a
job step of the allocation. tests/workflow/test_slurm.py runs it on the test cluster."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from cosmos_t2.service import client
from cosmos_t2.service.address import SERVE_DIR_ENV, Address, runtime_folder, server_address
from cosmos_t2.service.allocation import step_environment


def test_the_address_names_the_allocation_and_its_gpu() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))  # short: a socket path must stay < 100 chars
    base = {SERVE_DIR_ENV: str(folder)}
    local = server_address(base).socket
    one = server_address({**base, "SLURM_JOB_ID": "4711", "CUDA_VISIBLE_DEVICES": "0"}).socket
    other = server_address({**base, "SLURM_JOB_ID": "4712", "CUDA_VISIBLE_DEVICES": "0"}).socket
    cpu = server_address({**base, "SLURM_JOB_ID": "4711"}).socket
    assert one.name.startswith("slurm4711-gpu0-") and other.name.startswith("slurm4712-gpu0-")
    assert cpu.name.startswith("slurm4711-") and "gpu" not in cpu.name
    assert not local.name.startswith("slurm")
    assert len({local, one, other, cpu}) == 4  # two allocations on one node never share a server
    assert {p.parent for p in (local, one, other, cpu)} == {folder}
    # a GPU named by UUID: no slash or colon in the file name, and the path stays short
    mig = server_address({**base, "SLURM_JOB_ID": "9", "CUDA_VISIBLE_DEVICES": "MIG-4f3a/1:0" * 4}).socket
    assert mig.parent == folder and mig.name.startswith("slurm9-gpuMIG-4f3a_1_0") and len(mig.name) < 70
    shutil.rmtree(folder)


def test_without_a_runtime_folder_of_ours_sockets_go_to_a_private_folder_under_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fallback = tmp_path / f"cosmos-t2-{os.getuid()}"
    # a batch job handed the login node's XDG_RUNTIME_DIR, which its node does not have; or none at all
    for env in ({"XDG_RUNTIME_DIR": str(tmp_path / "run" / "user" / "1000")}, {}):
        assert runtime_folder(env) == fallback, env
        assert stat.S_IMODE(fallback.stat().st_mode) == 0o700 and fallback.stat().st_uid == os.getuid()
    assert not (tmp_path / "run").exists()
    ours = tmp_path / "xdg"
    ours.mkdir(mode=0o700)
    assert runtime_folder({"XDG_RUNTIME_DIR": str(ours)}) == ours / "cosmos-t2"


def test_inside_an_allocation_the_server_starts_as_a_job_step_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "srun_path", lambda: "/usr/bin/srun")
    address = Address(Path("/tmp/ct2-x/slurm42-gpu0-abc.sock"))
    job_step = {  # what a job step of the allocation sees: its own CPUs, memory, GPU, step id
        "PATH": "/bin",
        "SLURM_JOB_ID": "42",
        "SLURM_STEP_ID": "3",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_MEM_PER_NODE": "3000",
        "SLURM_GPUS": "1",
        "SRUN_CPUS_PER_TASK": "2",
        "SBATCH_PARTITION": "gpu",
        "CUDA_VISIBLE_DEVICES": "0",
        "COSMOS_T2_SERVE_DIR": "/tmp/ct2-x",
    }
    command, env = client.server_command(address, ["--idle-timeout", "600"], job_step)
    serve = [sys.executable, "-m", "cosmos_t2.cli", "serve", "--socket", str(address.socket)]
    assert command[: command.index("env")] == [
        "/usr/bin/srun",
        "--overlap",
        "--jobid=42",
        "--ntasks=1",
        "--nodes=1",
        "--cpus-per-task=1",
        "--mem=0",
        "--job-name=cosmos-t2-serve",
        "--input=none",
        "--output=/tmp/ct2-x/slurm42-gpu0-abc.log",
        "--error=/tmp/ct2-x/slurm42-gpu0-abc.log",
        "--open-mode=append",
        "--quiet",
    ]
    # the client's GPU, which SLURM's own CUDA_VISIBLE_DEVICES for the new step (all of the allocation's)
    # would replace
    assert command[command.index("env") :] == [
        "env",
        "CUDA_VISIBLE_DEVICES=0",
        *serve,
        "--idle-timeout",
        "600",
    ]
    # srun would read the job step's SLURM_*/SRUN_*/SBATCH_* variables as the new step's options
    assert env == {
        "PATH": "/bin",
        "SLURM_JOB_ID": "42",
        "CUDA_VISIBLE_DEVICES": "0",
        "COSMOS_T2_SERVE_DIR": "/tmp/ct2-x",
    }
    # outside SLURM, or where there is no srun: the server is this client's child, as on a workstation
    assert client.server_command(address, [], {"PATH": "/bin"}) == (serve, None)
    monkeypatch.setattr(client, "srun_path", lambda: None)
    assert client.server_command(address, [], job_step) == (serve, None)


def test_a_percent_in_the_log_path_is_not_an_srun_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "srun_path", lambda: "srun")
    assert step_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) == {"SLURM_JOB_ID": "7"}
    command, _ = client.server_command(Address(Path("/tmp/a%jb/s.sock")), [], {"SLURM_JOB_ID": "7"})
    assert "--output=/tmp/a%%jb/s.log" in command  # srun would write /tmp/a7b/s.log
