"""`infer --server` and `cosmos-t2 serve` on the tiny model, on CPU, through the real console script.

Every test gets its own short runtime folder (COSMOS_T2_SERVE_DIR), so no real user's server is touched,
and kills whatever server it started (by the pid each server writes beside its socket).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serve_env import cli, private_serve_env, status

from cosmos_t2.errors import CosmosError
from cosmos_t2.service.address import SERVE_DIR_ENV, Address, authkey, locked, server_key
from cosmos_t2.service.client import connect_or_start, request
from cosmos_t2.service.serve import serve
from cosmos_t2.video import write_video

FAST = ["--tiny", "--device", "cpu", "--quiet", "--latents-only",
        "--set", "num_steps=2", "--set", "num_video_frames_per_chunk=9"]  # fmt: skip

# Sidecar keys that differ between any two runs of a job (clocks, and the command line in provenance).
VOLATILE = {"created_unix", "timings_s", "seconds_per_step", "steady_seconds_per_step", "peak_memory_gib",
            "total_s", "startup_s", "provenance"}  # fmt: skip


@pytest.fixture
def serve_env() -> Iterator[dict[str, str]]:
    with private_serve_env() as env:
        yield env


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


def test_a_served_job_writes_where_its_client_meant_and_records_the_clients_command(
    jobs: Path, serve_env: dict[str, str]
) -> None:
    """The server runs in its own folder and never changes it: every path (the spec, -o, a --set path) is
    the client's, resolved in the client's folder, and shown as the client wrote it."""
    client_dir = jobs / "client"
    client_dir.mkdir(exist_ok=True)
    args = ["infer", "../a.json", "-o", "out", *FAST, "--set", "video_path=../input.mkv", "--server"]
    served = cli(args, serve_env, client_dir)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["out/a.latents.safetensors", "out/a.json"]
    assert "done a: out/a.latents.safetensors" in served.stderr
    assert (client_dir / "out" / "a.latents.safetensors").is_file()
    server_dir = Path(serve_env[SERVE_DIR_ENV])  # the server's working folder (`client.start_server`)
    assert not (server_dir / "out").exists()
    record = json.loads((client_dir / "out" / "a.json").read_text())
    assert record["provenance"]["command"][1:] == args  # the client's argv, not the server's
    assert record["spec"]["video_path"] == str(jobs / "input.mkv")


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


# --- hostile folders and keys, silent clients, faults (issue 32) -------------------------------------------


def _private_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))  # 0700, ours


def _serve_in_thread(address: Address, **kwargs: Any) -> tuple[threading.Thread, list[BaseException]]:
    """The library's server loop on a thread, with a handler that answers every job with exit code 0."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            serve(address, lambda payload, emit: 0, lambda: {"pid": os.getpid()}, log=lambda line: None,
                  **{"idle_timeout": 30.0, **kwargs})  # fmt: skip
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not address.socket.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread, errors


@pytest.mark.parametrize("mode", [0o1777, 0o770, 0o755])
def test_a_socket_in_a_shared_folder_is_refused(mode: int) -> None:
    folder = _private_folder()
    try:
        folder.chmod(mode)
        with pytest.raises(CosmosError, match="only you can open") as info:
            serve(Address(folder / "s.sock"), lambda p, e: 0, dict, idle_timeout=1.0, log=print)
        assert str(folder) in str(info.value)
        assert not (folder / "s.sock").exists() and not (folder / "authkey").exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_serve_socket_cli_refuses_a_world_writable_folder(jobs: Path, serve_env: dict[str, str]) -> None:
    folder = _private_folder()
    try:
        folder.chmod(0o1777)
        done = cli(["serve", "--socket", str(folder / "s.sock"), "--idle-timeout", "5"], serve_env, jobs)
        assert done.returncode == 2
        assert done.stderr.count("error:") == 1 and str(folder) in done.stderr, done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_planted_key_readable_by_others_is_refused() -> None:
    folder = _private_folder()
    try:
        key = folder / "authkey"
        key.write_bytes(b"k" * 32)
        key.chmod(0o644)  # contents known to whoever planted or can read it
        with pytest.raises(CosmosError, match="0600") as info:
            serve(Address(folder / "s.sock"), lambda p, e: 0, dict, idle_timeout=1.0, log=print)
        assert str(key) in str(info.value)
        assert not (folder / "s.sock").exists()
        with pytest.raises(CosmosError, match="0600"):
            authkey(Address(folder / "s.sock"))  # a client refuses it too: it never sends that key
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_key_owned_by_another_user_is_refused() -> None:
    folder = _private_folder()
    try:
        key = folder / "authkey"
        key.write_bytes(b"k" * 32)
        key.chmod(0o600)
        os.chown(key, 65534, 65534)
        with pytest.raises(CosmosError, match="file of yours"):
            authkey(Address(folder / "s.sock"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_socket_is_private_whatever_the_umask() -> None:
    folder = _private_folder()
    old = os.umask(0o000)
    try:
        address = Address(folder / "s.sock")
        thread, errors = _serve_in_thread(address)
        assert not errors and stat.S_IMODE(address.socket.stat().st_mode) == 0o600
        assert request(address, "stop") is not None
        thread.join(10)
        assert not thread.is_alive()
    finally:
        os.umask(old)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_silent_connection_is_dropped_and_never_blocks_the_next_client() -> None:
    folder = _private_folder()
    try:
        address = Address(folder / "s.sock")
        thread, errors = _serve_in_thread(address, handshake_timeout=0.5)
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(address.socket))  # and never sends a byte
        started = time.monotonic()
        answer = request(address, "status")
        assert answer == {"pid": os.getpid()} and time.monotonic() - started < 5
        assert request(address, "stop") is not None
        thread.join(10)
        assert not thread.is_alive() and not errors
        silent.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_idle_timeout_ends_a_server_held_by_silent_connections() -> None:
    folder = _private_folder()
    try:
        address = Address(folder / "s.sock")
        thread, errors = _serve_in_thread(address, idle_timeout=1.5, handshake_timeout=0.5)
        silent = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for sock in silent:
            sock.connect(str(address.socket))
        thread.join(8)  # dropped connections do not count as requests: 1.5 s after the start it ends
        assert not thread.is_alive() and not errors
        assert not address.socket.exists()
        for sock in silent:
            sock.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_server_failing_after_binding_does_not_wait_on_the_clients_start_lock() -> None:
    folder = _private_folder()
    try:
        address = Address(folder / "s.sock")

        def log(line: str) -> None:
            raise RuntimeError("failed right after binding")

        done: list[BaseException] = []

        def target() -> None:
            try:
                serve(address, lambda p, e: 0, dict, idle_timeout=5.0, log=log)
            except RuntimeError as exc:
                done.append(exc)

        with locked(address.lock):  # as the client that started it holds it, waiting for an answer
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            thread.join(8)
            assert not thread.is_alive(), "the failing server waits for the lock the client holds"
        assert done and not address.socket.exists()  # cleaned up even without the lock
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_client_gets_the_error_of_a_server_that_fails_after_binding_within_seconds(
    serve_env: dict[str, str],
) -> None:
    folder = Path(serve_env[SERVE_DIR_ENV])
    address = Address(folder / "f.sock")
    address.pid.mkdir()  # the server's pid file cannot be written: it fails after binding
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", serve_env)  # the server's PYTHONPATH
        with pytest.raises(CosmosError, match="exited") as info:
            connect_or_start(address, ["--idle-timeout", "30"], timeout=60)
    assert time.monotonic() - started < 30
    assert "f.pid" in str(info.value)  # the server's own error line, from its log
    address.pid.rmdir()  # for the fixture, which reads every pid file


def test_a_key_file_deleted_or_replaced_under_a_live_server_is_recovered_from() -> None:
    folder = _private_folder()
    try:
        address = Address(folder / "s.sock")
        thread, errors = _serve_in_thread(address)
        assert request(address, "status") is not None
        address.key_file.unlink()  # a tmp cleaner
        assert request(address, "status") is not None  # the next client's new key is the key
        address.key_file.unlink()
        address.key_file.write_bytes(os.urandom(32))  # replaced by us (umask 022: made private below)
        address.key_file.chmod(0o600)
        assert request(address, "status") is not None
        assert request(address, "stop") is not None
        thread.join(10)
        assert not thread.is_alive() and not errors
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_serve_stop_works_from_the_pid_file_when_the_key_is_refused(
    jobs: Path, serve_env: dict[str, str]
) -> None:
    folder = Path(serve_env[SERVE_DIR_ENV])
    sock = folder / "k.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "cosmos_t2.cli", "serve", "--socket", str(sock), "--idle-timeout", "60"],
        env=serve_env, cwd=jobs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.with_suffix(".pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        (folder / "authkey").chmod(0o644)  # the key is no longer usable by any client
        stopped = cli(["serve", "--socket", str(sock), "--stop"], serve_env, jobs)
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout)["pid"] == server.pid
        assert server.wait(timeout=20) != 0 or True
        assert not sock.exists()
    finally:
        if server.poll() is None:
            server.kill()
