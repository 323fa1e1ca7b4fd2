"""GPU slots (`cosmos-t2 --gpu-slots N`) on CPU: fake GPUs are only names, so the locks and the
CUDA_VISIBLE_DEVICES each process ends up with are what is checked, through the real CLI in subprocesses.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _serve_env import private_serve_env

from cosmos_t2.errors import CosmosError
from cosmos_t2.service.address import server_address
from cosmos_t2.service.slots import (
    VISIBLE_DEVICES,
    acquire_gpu_slot,
    slot_devices,
    slot_environments,
    try_lock,
    use_gpu_slot,
)

# A job's start as the CLI does it (the app's callback takes the slot), then it holds the slot until
# the test closes its stdin or kills it, and says which device it got.
HOLDER = """\
import os, sys
from cosmos_t2.cli import app
app(["--gpu-slots", "2", "version"], standalone_mode=False)
print("device=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()
"""


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    with private_serve_env() as serve_env:
        serve_env.pop(VISIBLE_DEVICES, None)
        yield serve_env


def start_holder(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", HOLDER], env=env, bufsize=0,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip


def device_of(holder: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The device a holder printed, or None when it printed none within `timeout` (it is waiting).
    Unbuffered reads: a buffered readline could hold the line while select waits on the pipe."""
    assert holder.stdout is not None
    fd, seen = holder.stdout.fileno(), b""
    while select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None  # it ended without a slot
        seen += chunk
        found = re.search(rb"^device=(\S+)$", seen, flags=re.M)
        if found:
            return found[1].decode()
    return None


def test_concurrent_jobs_get_different_gpus_and_a_killed_one_frees_its_gpu_for_a_waiter(
    env: dict[str, str],
) -> None:
    holders = [start_holder(env), start_holder(env)]
    try:
        devices = [device_of(h, timeout=60) for h in holders]
        assert sorted(map(str, devices)) == ["0", "1"]
        waiter = start_holder(env)
        holders.append(waiter)
        assert device_of(waiter, timeout=1.5) is None  # both GPUs are taken: it waits
        holders[0].send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the kernel drops its lock
        holders[0].wait()
        assert device_of(waiter, timeout=30) == devices[0]
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_all_slots_taken_past_the_wait_is_one_error_line(env: dict[str, str]) -> None:
    held = [acquire_gpu_slot(2, env), acquire_gpu_slot(2, env)]
    try:
        assert [slot.index for slot in held] == [0, 1]
        proc = subprocess.run([sys.executable, "-m", "cosmos_t2.cli", "--gpu-slots", "2", "--gpu-slot-wait",
                               "0.3", "version"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 2 and "all 2 GPU slots stayed taken for 0.3 s" in proc.stderr
        assert proc.stdout == ""  # the command never ran
    finally:
        for slot in held:
            slot.release()
    assert acquire_gpu_slot(2, env, timeout=0).index == 0  # released: the first is free again


def test_a_site_given_subset_of_gpus_stays_that_subset(env: dict[str, str]) -> None:
    env[VISIBLE_DEVICES] = "4, 6,7"
    assert slot_devices(2, env) == ["4", "6"]
    first, second = dict(env), dict(env)
    slots = [use_gpu_slot(2, first), use_gpu_slot(2, second)]
    try:
        assert (first[VISIBLE_DEVICES], second[VISIBLE_DEVICES]) == ("4", "6")
        assert slots[0].lock.name == "gpu-4.lock"
        assert slots[0].lock.read_text() == f"{os.getpid()}\n"  # who holds it, for a person looking
    finally:
        for slot in slots:
            slot.release()
    with pytest.raises(CosmosError, match="names 3 device"):
        slot_devices(4, env)
    with pytest.raises(CosmosError, match="at least 1"):
        slot_devices(0, env)


def test_a_process_started_by_a_holder_does_not_keep_its_slot(env: dict[str, str]) -> None:
    """A job's `infer --server` starts a server that outlives it: the server must not inherit the lock."""
    slot = acquire_gpu_slot(1, env)
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        slot.release()
        fd = try_lock(slot.lock)
        assert fd is not None  # the child, still running, holds nothing
        os.close(fd)
    finally:
        child.kill()
        child.wait()


def test_each_slot_reaches_its_own_server(env: dict[str, str]) -> None:
    """A client on slot 1 talks to another server than one on slot 0 (the address names the visible GPU),
    and the sweep's end computes the same addresses to stop both."""
    slot0, slot1 = slot_environments(2, env)
    assert (slot0[VISIBLE_DEVICES], slot1[VISIBLE_DEVICES]) == ("0", "1")
    address0, address1 = server_address(slot0), server_address(slot1)
    assert address0.socket != address1.socket
    assert address0.socket.parent == address1.socket.parent == Path(env["COSMOS_T2_SERVE_DIR"])
    # what a job holding slot 1 computes for itself after the CLI set its CUDA_VISIBLE_DEVICES
    job = dict(env)
    held = [acquire_gpu_slot(2, env)]  # slot 0 is busy, so the job gets slot 1
    try:
        held.append(use_gpu_slot(2, job))
        assert server_address(job) == address1
    finally:
        for slot in held:
            slot.release()
