"""The server runs a render's mp4 write beside the next job's GPU work (issue 31, item 3).

Each job runs on a thread of its own, and the GPU lock is held by one request at a time: an infer job for
all of it, a render for its decode only. The first test runs the real server loop (`service.serve`) and
handler (`InferService`) in this process, on the tiny model, on CPU, so that a spy on the mp4 write can
wait for the other job: the infer job is sent once the render is in its write, and the write cannot end
until the infer job holds the GPU, which proves the render let go of it before writing (with one job at
a time, or the GPU held through the write, the test fails). The others use a stand-in handler: status and
stop while jobs run, the bound on running jobs and their order, a client hanging up beside another job.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serve_env import cli, private_serve_env

from cosmos_t2.job import output
from cosmos_t2.job.options import RunSettings
from cosmos_t2.service import infer as infer_module
from cosmos_t2.service.address import Address, authkey
from cosmos_t2.service.client import request, submit
from cosmos_t2.service.infer import InferArgs
from cosmos_t2.service.render import RenderArgs
from cosmos_t2.service.request import InferRequest, InferService, RenderRequest
from cosmos_t2.service.serve import serve
from cosmos_t2.video import write_video

STEPS = ["num_steps=2", "num_video_frames_per_chunk=9"]
WAIT_S = 60.0  # far past what either tiny job takes on a busy 2-core CPU; only a serialized server waits it


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """One tiny job, its latents and its mp4 made by `cosmos-t2` processes of their own (the reference)."""
    frames = np.stack([np.full((64, 64, 3), 10 + 12 * i, dtype=np.uint8) for i in range(17)])
    write_video(tmp_path / "input.mkv", frames, 12.0, lossless=True)
    spec = {"name": "a", "prompt": "a grey ramp", "video_path": "input.mkv", "seed": 1, "edge": {}}
    (tmp_path / "a.json").write_text(json.dumps(spec))
    with private_serve_env() as env:
        sets = [a for s in STEPS for a in ("--set", s)]
        job = cli(["infer", "a.json", "-o", "plain", "--tiny", "--device", "cpu", "--quiet", "--latents-only",
                   *sets], env, tmp_path)  # fmt: skip
        assert job.returncode == 0, job.stderr
        render = cli(["render", "plain/a.latents.safetensors", "-o", "plain/a.mp4", "--tiny", "--device", "cpu"],
                     env, tmp_path)  # fmt: skip
        assert render.returncode == 0, render.stderr
    yield tmp_path


@pytest.fixture
def address() -> Iterator[Address]:
    folder = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))  # short: a socket path stays < 100 chars
    yield Address(folder / "s.sock")
    shutil.rmtree(folder, ignore_errors=True)


def _serve_in_thread(address: Address, handle: Any, status: Callable[[], dict[str, Any]], log: list[str],
                     **kwargs: Any) -> threading.Thread:  # fmt: skip
    thread = threading.Thread(target=serve, args=(address, handle, status), daemon=True,
                              kwargs={"idle_timeout": 30.0, "log": log.append, **kwargs})  # fmt: skip
    thread.start()
    deadline = time.monotonic() + 10
    while not address.socket.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert address.socket.exists(), log
    return thread


def _client(address: Address, payload: Any, codes: dict[str, int], name: str) -> threading.Thread:
    def target() -> None:
        codes[name] = submit(address, payload, server_args=[], on_event=lambda event: None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_renders_write_runs_beside_the_next_jobs_steps_and_both_write_their_own_bytes(
    folder: Path, address: Address, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = InferService()
    on_gpu = threading.Event()  # the infer job holds the GPU lock (its run_infer runs inside it)
    writing = threading.Event()  # the render has decoded and is in its write
    times: dict[str, float] = {}
    answers: list[dict[str, Any]] = []
    run_infer, write = infer_module.run_infer, output.write_video_output

    def spied_infer(*args: Any, **kwargs: Any) -> None:
        times["infer_start"] = time.monotonic()
        on_gpu.set()
        run_infer(*args, **kwargs)
        times["infer_end"] = time.monotonic()

    def spied_write(*args: Any, **kwargs: Any) -> Path:
        times["write_start"] = time.monotonic()
        writing.set()
        assert on_gpu.wait(WAIT_S), "the infer job never got the GPU while the render wrote its mp4"
        answers.append(request(address, "status"))  # answered at once, with two jobs running
        path = write(*args, **kwargs)
        times["write_end"] = time.monotonic()
        return path

    monkeypatch.setattr(infer_module, "run_infer", spied_infer)
    monkeypatch.setattr(output, "write_video_output", spied_write)
    log: list[str] = []
    server = _serve_in_thread(address, service, service.status, log)
    render = RenderRequest(RenderArgs(Path("plain/a.latents.safetensors"), Path("video/a.mp4"), tiny=True,
                                      device="cpu").resolved(folder))  # fmt: skip
    args = InferArgs([Path("a.json")], out_dir=Path("served"), run=RunSettings(device="cpu"), tiny=True,
                     latents_only=True, set_=STEPS, quiet=True).resolved(folder)  # fmt: skip
    codes: dict[str, int] = {}
    clients = [_client(address, render, codes, "render")]
    # the infer job comes once the render has decoded: had it come first, it could take the GPU first
    assert writing.wait(WAIT_S), log
    clients.append(_client(address, InferRequest(args, argv=["cosmos-t2", "infer"]), codes, "infer"))
    for client in clients:
        client.join(2 * WAIT_S)
    assert codes == {"render": 0, "infer": 0}, log
    # the infer job held the GPU after the write started and before it ended: they overlapped
    assert times["write_start"] < times["infer_start"] < times["write_end"], times
    assert answers and answers[0]["served"] == {"infer": 1, "render": 1, "encode-prompt": 0}, answers
    assert service.status()["jobs"] == {"done": 2, "failed": 0}
    assert service.status()["builds"]["vae"] == 1  # one VAE for the render and the job, never two at once
    # the bytes of each job's own process
    assert (folder / "video/a.mp4").read_bytes() == (folder / "plain/a.mp4").read_bytes()
    latents = "a.latents.safetensors"
    assert (folder / "served" / latents).read_bytes() == (folder / "plain" / latents).read_bytes()
    assert request(address, "stop") is not None
    server.join(10)
    assert not server.is_alive()


class Gated:
    """A stand-in handler: each job reports that it started, waits until the test lets it end, then sends
    its client one event."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, payload: str, emit: Any) -> int:
        with self._lock:
            self.started.append(payload)
            gate = self.release.setdefault(payload, threading.Event())
        if not gate.wait(WAIT_S):
            return 1
        emit(f"{payload} done")  # to a client that hung up: ClientGone, the job abandoned
        return 0

    def let(self, name: str) -> None:
        with self._lock:
            self.release.setdefault(name, threading.Event()).set()

    def wait_started(self, count: int) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        while len(self.started) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.started)


def test_at_most_two_jobs_run_the_rest_start_in_order_and_status_answers_meanwhile(address: Address) -> None:
    handler, log = Gated(), []
    server = _serve_in_thread(address, handler, lambda: {"started": list(handler.started)}, log)
    codes: dict[str, int] = {}
    clients = []
    for name in ("a", "b", "c", "d"):
        clients.append(_client(address, name, codes, name))
        time.sleep(0.2)  # accepted in this order
    assert handler.wait_started(2) == ["a", "b"]
    time.sleep(0.3)
    assert request(address, "status") == {"started": ["a", "b"]}  # c and d wait, status does not
    handler.let("b")
    assert handler.wait_started(3) == ["a", "b", "c"]  # the first to come, not any waiting one
    handler.let("a")
    assert handler.wait_started(4) == ["a", "b", "c", "d"]
    handler.let("c")
    handler.let("d")
    for client in clients:
        client.join(WAIT_S)
    assert codes == {"a": 0, "b": 0, "c": 0, "d": 0}
    assert request(address, "stop") is not None
    server.join(10)
    assert not server.is_alive()


def test_stop_and_the_idle_timeout_wait_for_the_running_job(address: Address) -> None:
    handler, log = Gated(), []
    server = _serve_in_thread(address, handler, dict, log, idle_timeout=0.5)
    codes: dict[str, int] = {}
    client = _client(address, "a", codes, "a")
    assert handler.wait_started(1) == ["a"]
    time.sleep(1.5)  # three idle timeouts: the running job keeps the server
    assert server.is_alive()
    assert request(address, "stop") == {}  # answered at once
    time.sleep(0.3)
    assert server.is_alive() and "a" not in codes  # the job still runs, and the server waits for it
    handler.let("a")
    client.join(WAIT_S)
    assert codes == {"a": 0}
    server.join(10)
    assert not server.is_alive() and not address.socket.exists()
    assert any("exiting when its 1 running job(s) end" in line for line in log), log


def test_a_client_that_hangs_up_abandons_its_own_job_only(address: Address) -> None:
    handler, log = Gated(), []
    server = _serve_in_thread(address, handler, dict, log)
    gone = Client(str(address.socket), family="AF_UNIX", authkey=authkey(address))
    gone.send(("job", "gone"))
    assert gone.recv()[0] == "accepted"
    codes: dict[str, int] = {}
    stays = _client(address, "stays", codes, "stays")
    assert handler.wait_started(2) == ["gone", "stays"]
    gone.close()  # killed, or its Snakemake job cancelled, while both jobs run
    handler.let("gone")
    deadline = time.monotonic() + WAIT_S
    while "the client hung up: job abandoned" not in log and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "the client hung up: job abandoned" in log and "stays" not in codes  # the other job runs on
    handler.let("stays")
    stays.join(WAIT_S)
    assert codes == {"stays": 0}
    assert request(address, "stop") is not None
    server.join(10)
    assert not server.is_alive()
