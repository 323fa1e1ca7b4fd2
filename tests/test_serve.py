"""`infer --server` and `cosmos-t2 serve` on the tiny model, on CPU, through the real console script.

Every test gets its own short runtime folder (COSMOS_T2_SERVE_DIR), so no real user's server is touched,
and kills whatever server it started (by the pid each server writes beside its socket).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cosmos_t2.pipeline.serve import SERVE_DIR_ENV, server_key
from cosmos_t2.video import write_video

FAST = ["--tiny", "--device", "cpu", "--quiet", "--latents-only",
        "--set", "num_steps=2", "--set", "num_video_frames_per_chunk=9"]  # fmt: skip

# Sidecar keys that differ between any two runs of a job (clocks, and the command line in provenance).
VOLATILE = {"created_unix", "timings_s", "seconds_per_step", "steady_seconds_per_step", "peak_memory_gib",
            "total_s", "startup_s", "provenance"}  # fmt: skip


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose servers live in a fresh folder (short: a socket path must stay < 100 chars)."""
    folder = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))
    repo = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, SERVE_DIR_ENV: str(folder), "PYTHONPATH": pythonpath}
    yield env
    for pid_file in folder.glob("*.pid"):
        _kill(int(pid_file.read_text()))
    shutil.rmtree(folder, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two jobs sharing a model set (edge control, tiny model), and one whose input is missing."""
    folder = tmp_path_factory.mktemp("jobs")
    frames = np.stack([np.full((64, 64, 3), 10 + 12 * i, dtype=np.uint8) for i in range(17)])
    write_video(folder / "input.mkv", frames, 12.0, lossless=True)
    for name, seed, video in (("a", 1, "input.mkv"), ("b", 2, "input.mkv"), ("bad", 1, "missing.mkv")):
        spec = {"name": name, "prompt": "a grey ramp", "video_path": video, "seed": seed, "edge": {}}
        (folder / f"{name}.json").write_text(json.dumps(spec))
    return folder


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cosmos_t2.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def status(env: dict[str, str], cwd: Path) -> dict:
    return json.loads(cli(["serve", "--status"], env, cwd).stdout)


def test_two_clients_share_one_network_and_write_what_plain_infer_writes(
    jobs: Path, serve_env: dict[str, str]
) -> None:
    for name in ("a", "b"):
        served = cli(["infer", f"{name}.json", "-o", "served", *FAST, "--server"], serve_env, jobs)
        assert served.returncode == 0, served.stderr
        # the job's own lines reach the client: its output paths on stdout, its progress on stderr
        assert served.stdout.split() == [f"served/{name}.latents.safetensors", f"served/{name}.json"]
        assert f"done {name}: served/{name}.latents.safetensors" in served.stderr
        plain = cli(["infer", f"{name}.json", "-o", "plain", *FAST], serve_env, jobs)
        assert plain.returncode == 0, plain.stderr
        latents = f"{name}.latents.safetensors"
        assert (jobs / "served" / latents).read_bytes() == (jobs / "plain" / latents).read_bytes()
        record, expected = (json.loads((jobs / d / f"{name}.json").read_text()) for d in ("served", "plain"))
        for key in set(record) | set(expected):
            if key not in VOLATILE:
                assert record[key] == expected[key], key
        # the client's command line, not the server's
        assert record["provenance"]["command"][1:] == [
            "infer",
            f"{name}.json",
            "-o",
            "served",
            *FAST,
            "--server",
        ]
    state = status(serve_env, jobs)
    assert state["running"] and state["jobs"] == {"done": 2, "failed": 0}
    assert state["builds"]["net"] == 1 and state["builds"]["vae"] == 1  # built once for both jobs


def test_a_failing_job_is_the_clients_error_and_the_server_serves_on(
    jobs: Path, serve_env: dict[str, str]
) -> None:
    bad = cli(["infer", "bad.json", "-o", "served", *FAST, "--server"], serve_env, jobs)
    plain = cli(["infer", "bad.json", "-o", "plain", *FAST], serve_env, jobs)
    assert bad.returncode == plain.returncode == 2
    assert "missing.mkv" in bad.stderr and bad.stderr.strip() == plain.stderr.strip()  # infer's one line
    good = cli(["infer", "a.json", "-o", "served", *FAST, "--server"], serve_env, jobs)
    assert good.returncode == 0, good.stderr
    assert status(serve_env, jobs)["jobs"] == {"done": 1, "failed": 1}


def test_server_exits_after_its_idle_timeout(jobs: Path, serve_env: dict[str, str]) -> None:
    socket_path = Path(serve_env[SERVE_DIR_ENV]) / "idle.sock"
    command = [
        sys.executable,
        "-m",
        "cosmos_t2.cli",
        "serve",
        "--socket",
        str(socket_path),
        "--idle-timeout",
        "2",
    ]
    server = subprocess.Popen(
        command, env=serve_env, cwd=jobs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        log = server.communicate(timeout=60)[0].decode()
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0 and "no request for 2 s: exiting" in log
    assert not socket_path.exists() and not socket_path.with_suffix(".pid").exists()


def test_another_source_fingerprint_or_gpu_gets_another_server() -> None:
    base = {"uid": 1000, "host": "node1", "executable": "/venv/bin/python", "fingerprint": "f1", "env": {}}
    key = server_key(**base)
    assert server_key(**base) == key  # stable: every client of one environment finds the same server
    assert server_key(**{**base, "fingerprint": "f2"}) != key  # edited or reinstalled code
    for env in ({"CUDA_VISIBLE_DEVICES": "1"}, {"SLURM_JOB_ID": "42"}, {"COSMOS_T2_CACHE_DIR": "/x"}):
        assert server_key(**{**base, "env": env}) != key, env
    assert server_key(**{**base, "env": {"PATH": "/bin"}}) == key  # unrelated variables do not matter
