"""Where a server listens, and who may talk to it: the socket's name, its private folder, key and lock.

Reuse is safe only where everything that shapes a job's process matches, so the socket's name is a
hash of it (`server_key`): user, host, the visible GPUs, the SLURM allocation, the Python executable,
the `COSMOS_T2_*` environment and a fingerprint of the installed cosmos_t2 source; a code change or
another GPU gets another server. Inside a SLURM allocation the name starts `slurm<job id>-gpu<devices>-`:
two allocations on one node never share a server. Sockets live in a per-user 0700 folder, and every
connection proves it holds the folder's 0600 key (`multiprocessing.connection`'s challenge), since requests
are pickles.
Clients start a server under the socket's lock (`locked`), and a server removes its socket under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cosmos_t2
from cosmos_t2.errors import CosmosError

SERVE_DIR_ENV = "COSMOS_T2_SERVE_DIR"  # overrides the runtime folder (tests, or a site's own place)
MAX_SOCKET_PATH = 100  # the kernel's limit is 108 bytes for a Unix socket path


@dataclass(frozen=True)
class Address:
    """Where one server listens, and the files beside its socket."""

    socket: Path

    @property
    def lock(self) -> Path:
        return self.socket.with_suffix(".lock")

    @property
    def log(self) -> Path:
        return self.socket.with_suffix(".log")

    @property
    def pid(self) -> Path:
        return self.socket.with_suffix(".pid")

    @property
    def key_file(self) -> Path:
        return self.socket.parent / "authkey"


def runtime_folder(env: Mapping[str, str] | None = None) -> Path:
    """The per-user folder for sockets (created 0700); refused when someone else could enter it."""
    env = os.environ if env is None else env
    if env.get(SERVE_DIR_ENV):
        folder = Path(env[SERVE_DIR_ENV])
    elif _own_folder(env.get("XDG_RUNTIME_DIR")):
        folder = Path(env["XDG_RUNTIME_DIR"]) / "cosmos-t2"
    else:  # also where a batch job was handed the XDG_RUNTIME_DIR of the login node, absent on its node
        folder = Path(tempfile.gettempdir()) / f"cosmos-t2-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_folder(folder)
    return folder


def _own_folder(path: str | None) -> bool:
    """Whether `path` names an existing folder of ours (as systemd makes /run/user/<uid>)."""
    if not path:
        return False
    try:
        info = Path(path).lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def check_private_folder(folder: Path) -> None:
    """Refuse a folder for sockets and keys that is not ours alone (the default one, and `--socket`'s).

    Anyone who can write there could plant the key file, and whoever knows the key runs code as us
    (requests are pickles); lstat, so a symlink planted in /tmp does not pass for our folder."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        raise CosmosError("the server folder does not exist", file=folder) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise CosmosError(
            "the server folder must be a folder of yours that only you can open (0700)", file=folder
        )


def code_fingerprint(package: Path | None = None) -> str:
    """A hash of the installed package's .py files (path, size, mtime): any edit or reinstall changes it."""
    root = (package or Path(cosmos_t2.__file__).parent).resolve()
    digest = hashlib.sha256(str(root).encode())
    for path in sorted(root.rglob("*.py")):
        info = path.stat()
        digest.update(f"{path.relative_to(root)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def server_key(*, uid: int, host: str, executable: str, fingerprint: str, env: Mapping[str, str]) -> str:
    """The name of the server a job may use: equal exactly when a server's process would run it the same."""
    identity = {
        "uid": uid,
        "host": host,
        "python": executable,
        "code": fingerprint,
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": env.get("SLURM_JOB_ID"),  # a server never outlives, or spans, an allocation
        # cosmos-t2's own settings (cache and model folders) are read from the environment
        "env": sorted(
            f"{k}={v}" for k, v in env.items() if k.startswith("COSMOS_T2_") and k != SERVE_DIR_ENV
        ),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def socket_prefix(env: Mapping[str, str]) -> str:
    """`slurm<job id>-[gpu<devices>-]` inside a SLURM allocation, else nothing: the key already tells
    allocations and GPUs apart, the name says it to a person, who can also clean up after an allocation."""
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return ""
    prefix = f"slurm{job_id}-"
    if env.get("CUDA_VISIBLE_DEVICES"):
        prefix += f"gpu{env['CUDA_VISIBLE_DEVICES']}-"
    return re.sub(r"[^A-Za-z0-9._-]", "_", prefix)[:40]  # a GPU's UUID or MIG name: cut, the key is whole


def server_address(env: Mapping[str, str] | None = None) -> Address:
    """This process's server: the address every job of this environment, GPU and code computes alike."""
    env = os.environ if env is None else env
    key = server_key(
        uid=os.getuid(),
        host=socket.gethostname(),
        executable=sys.executable,
        fingerprint=code_fingerprint(),
        env=env,
    )
    path = runtime_folder(env) / f"{socket_prefix(env)}{key}.sock"
    if len(str(path)) >= MAX_SOCKET_PATH:
        raise CosmosError(f"the server socket path is over {MAX_SOCKET_PATH} characters; set {SERVE_DIR_ENV} to a "
                          "shorter folder", file=path)  # fmt: skip
    return Address(path)


def authkey(address: Address) -> bytes:
    """The folder's key, made on first use; linked into place whole, so a racing reader never sees half.

    The folder and the key file are checked on every read: a key that someone else wrote, or could read,
    is not a secret, and with it they could run code as us."""
    path = address.key_file
    check_private_folder(path.parent)
    if not os.path.lexists(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        os.unlink(tmp)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CosmosError(f"cannot open the server key ({exc.strerror})", file=path) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())  # of the file we read, not of a name that may change meanwhile
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise CosmosError("the server key must be a file of yours that only you can read or write "
                              "(0600); remove it and a new one is made", file=path)  # fmt: skip
        return f.read()


@contextlib.contextmanager
def locked(path: Path, timeout: float | None = None) -> Iterator[bool]:
    """Hold `path`'s lock; with `timeout`, give up after that many seconds (yields whether it is held)."""
    with open(path, "a") as f:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX if deadline is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
