"""One GPU per process on a machine with several: a lock file per GPU, the first free one taken.

Snakemake counts a local sweep's GPUs (`resources: gpu: N`) but does not pin them, so N concurrent jobs
would all open cuda:0. With `cosmos-t2 --gpu-slots N`, a process takes the first of N slots whose lock
it can get (an exclusive `flock` on `gpu-<device>.lock` in the per-user runtime folder of `address`),
waits while all are taken, and sets CUDA_VISIBLE_DEVICES to that slot's device before torch starts CUDA.
The lock lives as long as its open file, that is the process: a job that crashes or is killed frees its
GPU with no cleanup. Slot i is device i, or the i-th entry of a CUDA_VISIBLE_DEVICES the process was
given (a site's subset stays the subset). The lock's fd is close-on-exec, so a server a job starts
(`infer --server`) does not keep the job's slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from cosmos_t2.errors import CosmosError
from cosmos_t2.service.address import runtime_folder

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
POLL_S = 0.2  # how often a waiter tries the locks again: short against a job's minutes


@dataclass(frozen=True)
class GpuSlot:
    """A held slot: its index, the device it stands for, and the open lock file that holds it."""

    index: int
    device: str  # the CUDA_VISIBLE_DEVICES value of a process on this slot
    lock: Path
    fd: int  # held open for the process's life; closing it frees the slot

    def release(self) -> None:
        """Free the slot now (a process that ends frees it anyway)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def slot_devices(count: int, env: Mapping[str, str] | None = None) -> list[str]:
    """The device of each of `count` slots: 0..count-1, or the first `count` entries of CUDA_VISIBLE_DEVICES."""
    env = os.environ if env is None else env
    if count < 1:
        raise CosmosError(f"--gpu-slots must be at least 1, not {count}")
    visible = env.get(VISIBLE_DEVICES)
    if visible is None:
        return [str(i) for i in range(count)]
    given = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if len(given) < count:
        raise CosmosError(f"--gpu-slots {count}, but {VISIBLE_DEVICES}={visible!r} names {len(given)} "
                          "device(s): ask for at most as many slots as this process may see")  # fmt: skip
    return given[:count]


def slot_environments(count: int, env: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """`env` as a process holding each slot sees it (e.g. to reach each slot's server)."""
    env = os.environ if env is None else env
    return [{**env, VISIBLE_DEVICES: device} for device in slot_devices(count, env)]


def lock_path(folder: Path, device: str, env: Mapping[str, str]) -> Path:
    """The lock of one device. Named by the device, not the slot index, so sweeps handed different subsets
    never share a GPU; inside a SLURM allocation by the job id too, as its device numbers are its own."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device)  # a MIG name may hold slashes
    allocation = env.get("SLURM_JOB_ID")
    return folder / (f"gpu-{allocation}-{safe}.lock" if allocation else f"gpu-{safe}.lock")


def try_lock(path: Path) -> int | None:
    """An fd holding `path`'s exclusive lock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for a person looking at the folder; the lock itself is what counts.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def acquire_gpu_slot(
    count: int, env: Mapping[str, str] | None = None, *, timeout: float | None = None, poll: float = POLL_S
) -> GpuSlot:
    """The first free of `count` slots, waiting while all are taken; CosmosError after `timeout` seconds."""
    env = os.environ if env is None else env
    devices = slot_devices(count, env)
    folder = runtime_folder(env)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for index, device in enumerate(devices):
            path = lock_path(folder, device, env)
            fd = try_lock(path)
            if fd is not None:
                return GpuSlot(index, device, path, fd)
        if deadline is not None and time.monotonic() >= deadline:
            raise CosmosError(f"all {count} GPU slots stayed taken for {timeout:g} s (their locks and "
                              "holders' pids are gpu-*.lock there)", file=folder)  # fmt: skip
        time.sleep(poll)


def use_gpu_slot(
    count: int, env: MutableMapping[str, str] | None = None, *, timeout: float | None = None
) -> GpuSlot:
    """Take a slot (`acquire_gpu_slot`) and point CUDA_VISIBLE_DEVICES at its device, in `env` (default:
    this process's environment). Refused once this process has started CUDA: it would keep every GPU."""
    env = os.environ if env is None else env
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise CosmosError("--gpu-slots must be chosen before CUDA starts, and this process has started it")
    slot = acquire_gpu_slot(count, env, timeout=timeout)
    env[VISIBLE_DEVICES] = slot.device
    return slot
