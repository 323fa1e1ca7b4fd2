"""The SLURM path on a real cluster: the one-node cluster of scripts/slurm-local.sh, which .ci/run brings up
before `make test`. Where `sinfo` does not answer these tests skip and say why; with COSMOS_T2_SLURM=required
(.ci/run) they fail instead, so a CI without its cluster never passes them silently.

A small sweep (tiny model, 5 frames at 64x96, 1 step; 1 spec x 2 control weights = 2 jobs) through
`profiles/slurm-cpu` with the server writes the same bytes as `profiles/local`, in its own run folder, with
one allocation for its GPU stages, whose server (a job step of it) builds the network once for both diffuse
jobs, and a scancel'd allocation in it is retried with a new server; a failed job is the only one redone on
rerun; Ctrl-C leaves nothing in squeue; a request
no node can meet is refused before anything is submitted. The pre-flight and the profile mapping are
checked without a cluster too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _snakemake import snakemake_command

from cosmos_t2.service.address import SERVE_DIR_ENV
from cosmos_t2.video import write_video
from cosmos_t2.workflow.hardware import resolve_hardware
from cosmos_t2.workflow.slurm import Node, parse_gres, parse_sinfo, unmet

REPO = Path(__file__).resolve().parents[2]


def cluster_missing() -> str | None:
    """Why there is no usable SLURM cluster here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found): run `sudo bash scripts/slurm-local.sh` for the test cluster"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-p", "cpu", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s: is slurmctld running? (scripts/slurm-local.sh)"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return (
            f"no SLURM partition 'cpu' with a node up (sinfo: {proc.stderr.strip() or states or 'nothing'})"
        )
    return None


@pytest.fixture
def cluster() -> None:
    reason = cluster_missing()
    if reason and os.environ.get("COSMOS_T2_SLURM") == "required":
        pytest.fail(f"COSMOS_T2_SLURM=required, but {reason}")
    if reason:
        pytest.skip(reason)


def small_sweep(folder: Path) -> None:
    """One spec at two control weights: 1 decode, 1 controls, 1 prompt, 2 diffuse and 2 encode jobs."""
    frames = np.random.RandomState(0).randint(0, 255, (5, 64, 96, 3)).astype(np.uint8)
    write_video(folder / "input.mp4", frames, 8.0)
    base = {"prompt": "a robot arm", "video_path": "input.mp4", "num_video_frames_per_chunk": 5}
    (folder / "edge.json").write_text(json.dumps(base | {"name": "edge", "edge": {}}))
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(
        "specs: [edge.json]\ngrid: {control_weight: [0.5, 1.0], num_steps: [1]}\ntiny: true\nresults: results\n"
    )


def command(profile: str, *args: str) -> list[str]:
    return snakemake_command(*args, profile=profile)


def snakemake(folder: Path, profile: str, *args: str, ok: bool = True) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(command(profile, *args), cwd=folder, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, output[-4000:]
    return output, wall


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0] if "Job stats:" in output else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M) if m[1] != "total"}


def jobs_of(folder: Path) -> list[tuple[str, str, str]]:
    """(job id, state, comment) of the SLURM jobs submitted from `folder` still in squeue, not finished."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True, timeout=20
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3]
    return [(i, state, comment) for i, state, comment, cwd in rows if Path(cwd) == folder]


def outputs(run_dir: Path) -> dict[str, bytes]:
    files = sorted(run_dir.glob("diffuse/*/*.latents.safetensors")) + sorted(run_dir.glob("videos/*/*.mp4"))
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in files}


@pytest.fixture
def serve_dir() -> Iterator[Path]:
    """A private folder for the servers of the sweep's allocations (short: a socket path is < 100 chars)."""
    folder = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def served(serve_dir: Path) -> dict[str, tuple[list[str], str]]:
    """Per allocation (SLURM job id): the kinds of the jobs its server finished, and what it had built."""
    found = {}
    for log in sorted(serve_dir.glob("slurm*.log")):
        lines = log.read_text().splitlines()
        done = [m[1] for line in lines if (m := re.search(r" (\S+) job done in .* exit code 0 ", line))]
        built = re.findall(r"\(built: ([^)]*)\)", "\n".join(lines))
        found[re.match(r"slurm(\d+)-", log.name)[1]] = (done, built[-1] if built else "")
    return found


def server_steps(serve_dir: Path) -> list[str]:
    """The job steps the servers ran as, from SLURM's line in their logs when it cancelled them."""
    logs = "\n".join(log.read_text() for log in serve_dir.glob("slurm*.log"))
    return re.findall(r"\*\*\* STEP (\S+) ON \S+ CANCELLED", logs)


def steps_of(job_ids: list[str]) -> list[str]:
    """The job steps (`squeue -s`) still running in these allocations."""
    out = subprocess.run(["squeue", "-h", "-s", "-o", "%i|%j"], capture_output=True, text=True, timeout=20)
    return [line for line in out.stdout.splitlines() if line.split(".", 1)[0] in job_ids]


@pytest.mark.slurm
def test_the_sweep_through_slurm_writes_the_local_bytes_retries_and_redoes_only_a_failed_job(
    tmp_path: Path, cluster, serve_dir: Path
) -> None:
    small_sweep(tmp_path)
    _, local_wall = snakemake(tmp_path, "local")
    log = (tmp_path / "snakemake.log").open("w")
    start = time.perf_counter()
    # with the server (auto is off on CPU): each allocation's prompt, diffuse and encode jobs go to one
    # server, a job step of that allocation that its batch step starts (none for decode's allocation)
    proc = subprocess.Popen(command("slurm-cpu", "--retries", "1", "--config", "serve=True"), cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, SERVE_DIR_ENV: str(serve_dir)})  # fmt: skip
    try:
        job_id = wait_for(tmp_path, "accelerator", "RUNNING", proc)  # the sweep's GPU stages
        subprocess.run(["scancel", job_id], check=True, timeout=20)  # a pre-emption, a node lost: retried
        assert proc.wait(timeout=500) == 0, (tmp_path / "snakemake.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    slurm_wall = time.perf_counter() - start
    # The retried allocation's server ran its served jobs (1 prompt, 2 diffuse, 2 encode; the cancelled one's
    # server, if it got so far, ended with it) and built the network once for both diffuse jobs, though
    # each job ran in a job step of its own; the allocation's end ended it: no step of it is left.
    servers = served(serve_dir)
    assert job_id not in servers or servers[job_id][0] == [], servers
    (retry,) = (k for k in servers if k != job_id)
    done, built = servers[retry]
    assert sorted(done) == ["encode-prompt", "infer", "infer", "render", "render"], servers
    assert "net 1" in built and "vae 1" in built, servers
    # the allocation's first step, started by its batch step before any job's (common.smk), and cancelled
    # with the allocation; nothing of it left running
    assert f"{retry}.0" in server_steps(serve_dir), server_steps(serve_dir)
    assert steps_of(list(servers)) == []
    out = (tmp_path / "snakemake.log").read_text()
    assert "hardware label slurm-cpu" in out
    # a grouped job's failure names the group and shows its SLURM log, which says it was cancelled
    assert "Error in group accelerator" in out and re.search(rf"\*\*\* JOB {job_id} ON \S+ CANCELLED AT", out)
    assert "Trying to restart job" in out

    local, slurm = outputs(tmp_path / "results" / "cpu-local"), outputs(tmp_path / "results" / "slurm-cpu")
    assert len(local) == 4 and local.keys() == slurm.keys()  # 2 latents, 2 mp4s, each in its run folder
    assert [k for k in local if local[k] != slurm[k]] == []  # byte-identical, the retried job's too
    # every allocation kept its SLURM log (the profile keeps successful ones): 1 decode (a CPU stage) and
    # one for every GPU stage of the sweep (the profile's group: controls, prompt, 2 diffuse, 2 encode),
    # twice for the retry; spec, manifest and report run here
    logs = sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == 3, logs
    group_logs = tmp_path / ".snakemake" / "slurm_logs" / "group_accelerator_controls_diffuse_encode_prompt"
    assert len(list(group_logs.glob("*.log"))) == 2, logs
    assert jobs_of(tmp_path) == []
    print(
        f"small sweep: local {local_wall:.1f} s, SLURM {slurm_wall:.1f} s with a retry and the server, "
        f"{len(logs)} allocations, servers {servers}"
    )

    # a second sample whose control is one frame short fails in infer; once fixed, the rerun redoes that job
    # alone (the first sweep's decode, prompt and job are kept)
    frames = np.random.RandomState(0).randint(0, 255, (5, 64, 96, 3)).astype(np.uint8)
    write_video(tmp_path / "short_edge.mp4", frames[:4], 8.0)
    spec = json.loads((tmp_path / "edge.json").read_text())
    # its own prompt: a prompt shared with the first sample would be redone with it, since the shared stage's
    # spec is written from the first sample by name (the workflow's, not SLURM's)
    bad = spec | {
        "name": "bad",
        "prompt": "a robot arm, one frame short",
        "edge": {"control_path": "short_edge.mp4"},
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    config = (tmp_path / "config" / "config.yaml").read_text().replace("[edge.json]", "[edge.json, bad.json]")
    (tmp_path / "config" / "config.yaml").write_text(config.replace("[0.5, 1.0]", "[0.5]"))
    out, _ = snakemake(tmp_path, "slurm-cpu", "--keep-going", ok=False)
    assert "Error in rule diffuse" in out and job_counts(out).get("diffuse") == 1, out[-3000:]
    write_video(tmp_path / "short_edge.mp4", frames, 8.0)  # fixed
    out, _ = snakemake(tmp_path, "slurm-cpu")
    counts = job_counts(out)
    assert counts.get("diffuse") == 1 and counts.get("encode") == 1, counts
    assert not {"decode", "prompt"} & counts.keys(), counts
    jobs = json.loads((tmp_path / "results" / "slurm-cpu" / "manifest.json").read_text())["jobs"]
    assert len(jobs) == 2 and all(
        (tmp_path / "results" / "slurm-cpu" / j["paths"]["video"]).is_file() for j in jobs
    )


def wait_for(folder: Path, rule: str, state: str, proc: subprocess.Popen, seconds: float = 240) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        for job_id, job_state, comment in jobs_of(folder):
            if comment.startswith(f"rule_{rule}") and job_state == state:
                return job_id
        time.sleep(0.2)
    raise AssertionError(f"no {rule} job {state} in squeue (snakemake exit {proc.poll()})")


@pytest.mark.slurm
def test_ctrl_c_cancels_the_queued_and_running_jobs(tmp_path: Path, cluster) -> None:
    small_sweep(tmp_path)
    proc = subprocess.Popen(
        command("slurm-cpu"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(tmp_path, "", "RUNNING", proc)  # the sweep's first job (decode)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while jobs_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs_of(tmp_path) == []


@pytest.mark.slurm
def test_a_request_no_node_can_meet_is_refused_before_submitting(tmp_path: Path, cluster) -> None:
    small_sweep(tmp_path)
    out, _ = snakemake(tmp_path, "slurm-cpu", "--set-resources", "diffuse:mem_mb=99000000", ok=False)
    line = next(x for x in out.splitlines() if x.startswith("cosmos-t2: rule "))
    assert "rule diffuse asks for mem_mb=99000000" in line and "partition 'cpu'" in line
    assert "nothing was submitted" in line and jobs_of(tmp_path) == []
    assert not (tmp_path / ".snakemake" / "slurm_logs").exists()


def test_preflight_reads_sinfo_and_names_the_rule_and_resource() -> None:
    assert parse_gres("gpu:h100:4(S:0-1),gpu:a100:2") == {"h100": 4, "a100": 2}
    assert parse_gres("gpu:2") == {"": 2} and parse_gres("(null)") == {}
    nodes = parse_sinfo(
        "n1|16|128000|gpu:h100:4(S:0-1)\nn1|16|128000|gpu:h100:4(S:0-1)\nn2|64|512000|(null)\n"
    )
    assert nodes == [Node("n1", 16, 128000, {"h100": 4}), Node("n2", 64, 512000, {})]
    fits = {"mem_mb": 100000, "cpus_per_task": 16, "gpu": 1, "gpu_model": "h100"}
    assert unmet("diffuse", fits, "gpu", nodes) is None
    assert unmet("diffuse", fits | {"gpu_model": "h200"}, "gpu", nodes) == (
        "rule diffuse asks for gpu=1 of gpu_model h200, but no node of partition 'gpu' has more than 0 such GPUs (sinfo)"
    )
    assert "cpus_per_task=32" in unmet("encode", fits | {"cpus_per_task": 32}, "gpu", nodes)
    # each resource exists on some node, never all on one
    assert "no single node" in unmet("bench", fits | {"mem_mb": 200000}, "gpu", nodes)
    assert unmet("decode", {"mem_mb": 200000, "gpu": 0, "gpu_model": ""}, "gpu", nodes) is None


def test_a_slurm_profile_names_the_run_folder_after_the_executor() -> None:
    def label(default: dict, rules: dict | None = None) -> tuple[str, str, bool]:
        hw = resolve_hardware({"device": "auto", "hardware_label": ""}, rules or {}, {}, default)
        return hw.device, hw.label, hw.cluster

    assert label({}) == ("cpu", "cpu-local", False)
    assert label({"slurm_partition": "cpu"}) == ("cpu", "slurm-cpu", True)
    assert label({"slurm_partition": "gpu", "gpu_model": "h100"}) == ("cuda", "slurm-h100", True)
    assert label({"slurm_partition": "gpu", "gpu_model": "h100"}, {"diffuse": {"gpu": 0}}) == (
        "cpu",
        "slurm-cpu",
        True,
    )
    assert label({"slurm_partition": "gpu"}, {"diffuse": {"gpu": 1}}) == ("cuda", "slurm-gpu", True)
    assert label({}, {"diffuse": {"gpu": 1}}) == ("cuda", "local-gpu", False)
