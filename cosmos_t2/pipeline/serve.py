"""A long-lived process that runs one job at a time for short-lived clients, over a Unix socket.

A GPU job started as its own process pays the imports, the model load and the compile before its first
step (about half of a distilled job on an H200). `infer --server` hands its job to a server instead,
which keeps one model pool for every job it runs; what the job does is the caller's (`cli.serve`), this
module only moves requests and the job's output lines.

Reuse is safe only where everything that shapes a job's process matches, so the socket's name is a
hash of it (`server_key`): user, host, the visible GPUs, the SLURM allocation, the Python executable,
the `COSMOS_T2_*` environment and a fingerprint of the installed cosmos_t2 source; a code change or
another GPU gets another server. Sockets live in a per-user 0700 folder, and every connection proves it
holds the folder's 0600 key (`multiprocessing.connection`'s challenge), since requests are pickles.

A client that finds no server starts one under a lock (`fcntl.flock`), so racing clients start one
between them. A server exits after `idle_timeout` seconds without a request. It closes its socket
before it removes the file, and removes it under the same lock only if it is still its own, so a
client never talks to a server that is going away without seeing the connection fail first (it then
retries, starting a new server).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import (
    AuthenticationError,
    Client,
    Connection,
    answer_challenge,
    deliver_challenge,
)
from pathlib import Path
from typing import Any

import cosmos_t2
from cosmos_t2.errors import CosmosError

SERVE_DIR_ENV = "COSMOS_T2_SERVE_DIR"  # overrides the runtime folder (tests, or a site's own place)
START_TIMEOUT_S = 180.0  # a cold start on a GPU node: imports and CUDA init, before the first job
MAX_SOCKET_PATH = 100  # the kernel's limit is 108 bytes for a Unix socket path
LOG_ROTATE_BYTES = 1 << 20
CONNECT_ATTEMPTS = 3  # a server may exit between our connect and its accept: then start another

Emit = Callable[[str, str], None]  # (stream "out" | "err", text) to the client


class ClientGone(BaseException):
    """The client of the running job hung up (killed, or its Snakemake job cancelled): stop the job.

    A BaseException so that a batch's per-job `except Exception` does not take it for that job's failure."""


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
    elif env.get("XDG_RUNTIME_DIR"):
        folder = Path(env["XDG_RUNTIME_DIR"]) / "cosmos-t2"
    else:
        folder = Path(tempfile.gettempdir()) / f"cosmos-t2-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()  # lstat: a symlink planted in /tmp must not pass for our folder
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise CosmosError(
            "the server folder must be a folder of yours that only you can open (0700)", file=folder
        )
    return folder


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
    path = runtime_folder(env) / f"{key}.sock"
    if len(str(path)) >= MAX_SOCKET_PATH:
        raise CosmosError(f"the server socket path is over {MAX_SOCKET_PATH} characters; set {SERVE_DIR_ENV} to a "
                          "shorter folder", file=path)  # fmt: skip
    return Address(path)


def authkey(address: Address) -> bytes:
    """The folder's key, made on first use; linked into place whole, so a racing reader never sees half."""
    path = address.key_file
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        os.unlink(tmp)
    return path.read_bytes()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- client ------------------------------------------------------------------------------------------


def _connect(address: Address) -> Connection | None:
    """A connection to a live server, or None when none listens there (or it hung up: it was exiting)."""
    try:
        return Client(str(address.socket), family="AF_UNIX", authkey=authkey(address))
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError, EOFError):
        return None
    except AuthenticationError:
        raise CosmosError("the server there holds another key", file=address.socket) from None


def _log_tail(address: Address, lines: int = 15) -> str:
    try:
        text = address.log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())


def start_server(address: Address, server_args: list[str]) -> subprocess.Popen[bytes]:
    """`python -m cosmos_t2.cli serve` for `address`, in a session of its own (it outlives this job)."""
    if address.log.exists() and address.log.stat().st_size > LOG_ROTATE_BYTES:
        address.log.replace(address.log.with_suffix(".log.1"))
    command = [sys.executable, "-m", "cosmos_t2.cli", "serve", "--socket", str(address.socket), *server_args]
    with open(address.log, "ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=address.socket.parent, start_new_session=True)  # fmt: skip


def connect_or_start(
    address: Address, server_args: list[str], timeout: float = START_TIMEOUT_S
) -> Connection:
    """A connection to the address's server, started first (under the lock) when none answers."""
    conn = _connect(address)
    if conn is not None:
        return conn
    with locked(address.lock):
        conn = _connect(address)  # another client may have started it while we waited for the lock
        if conn is not None:
            return conn
        process = start_server(address, server_args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = _connect(address)
            if conn is not None:
                return conn
            if process.poll() is not None:
                raise CosmosError(f"the cosmos-t2 server exited ({process.returncode}) before it answered; its log "
                                  f"ends: {_log_tail(address)}", file=address.log)  # fmt: skip
            time.sleep(0.1)
        process.kill()  # ours, and never answered: it must not linger with the socket half made
        raise CosmosError(f"the cosmos-t2 server did not answer within {timeout:.0f} s", file=address.log)


def submit(address: Address, payload: Any, *, server_args: list[str], out: io.TextIOBase | Any = None,
           err: io.TextIOBase | Any = None) -> int:  # fmt: skip
    """Run `payload` on the server (started if needed); its output lines go to out/err; its exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    for attempt in range(CONNECT_ATTEMPTS):
        conn = connect_or_start(address, server_args)
        try:
            conn.send(("job", payload))
            _, pid = conn.recv()
            break
        except (EOFError, OSError):  # it was going away as we came: the next attempt starts a new one
            conn.close()
            if attempt == CONNECT_ATTEMPTS - 1:
                raise CosmosError(
                    "the cosmos-t2 server hung up before taking the job", file=address.log
                ) from None
    with conn:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                raise CosmosError(f"the cosmos-t2 server (pid {pid}) ended during the job, which left no outputs "
                                  "(this file is the server's log)", file=address.log) from None  # fmt: skip
            if message[0] == "done":
                return int(message[1])
            stream = out if message[0] == "out" else err
            stream.write(message[1])
            stream.flush()


def request(address: Address, kind: str) -> Any:
    """A "status" or "stop" answer from the address's server; None when none answers."""
    conn = _connect(address)
    if conn is None:
        return None
    with conn:
        try:
            conn.send((kind, None))
            return conn.recv()[1]
        except (EOFError, OSError):
            return None


# --- server ------------------------------------------------------------------------------------------


class LineWriter(io.TextIOBase):
    """A text stream that sends whole lines to the client as they are written."""

    def __init__(self, emit: Emit, stream: str) -> None:
        self._emit, self._stream, self._pending = emit, stream, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            whole, self._pending = self._pending.rsplit("\n", 1)
            self._emit(self._stream, whole + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = self._pending, ""
            self._emit(self._stream, text)


Handler = Callable[[Any, Emit], int]  # (payload, emit) -> exit code


def _bind(address: Address) -> socket.socket:
    if address.socket.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(address.socket))
        except (ConnectionRefusedError, FileNotFoundError):
            address.socket.unlink(missing_ok=True)  # a dead server's file
        else:
            raise CosmosError("a cosmos-t2 server already answers here", file=address.socket)
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(address.socket))
    listener.listen(16)
    return listener


def serve(address: Address, handle: Handler, status: Callable[[], dict[str, Any]], *, idle_timeout: float,
          log: Callable[[str], None]) -> None:  # fmt: skip
    """Answer requests one at a time until `idle_timeout` seconds pass without one, or a "stop"."""
    key = authkey(address)
    listener = _bind(address)
    inode = address.socket.stat().st_ino
    address.pid.write_text(f"{os.getpid()}\n")
    log(f"pid {os.getpid()} serving on {address.socket} (idle timeout {idle_timeout:g} s)")
    try:
        while True:
            listener.settimeout(idle_timeout)
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                log(f"no request for {idle_timeout:g} s: exiting")
                return
            sock.setblocking(True)
            with Connection(sock.detach()) as conn:
                try:
                    deliver_challenge(conn, key)
                    answer_challenge(conn, key)
                    kind, payload = conn.recv()
                except (EOFError, OSError, AuthenticationError) as exc:
                    log(f"dropped a connection before its request: {type(exc).__name__}: {exc}")
                    continue
                if kind != "job":
                    with contextlib.suppress(OSError):
                        conn.send((kind, status()))
                    if kind == "stop":
                        log("stopped on request")
                        return
                    continue
                _run(conn, payload, handle, log)
    finally:
        listener.close()  # first: from here connecting fails, so no client waits on us
        with locked(address.lock):
            if address.socket.exists() and address.socket.stat().st_ino == inode:  # not a successor's
                address.socket.unlink()
            address.pid.unlink(missing_ok=True)


def _run(conn: Connection, payload: Any, handle: Handler, log: Callable[[str], None]) -> None:
    def emit(stream: str, text: str) -> None:
        try:
            conn.send((stream, text))
        except OSError:
            raise ClientGone from None

    started = time.perf_counter()
    try:
        conn.send(("accepted", os.getpid()))
        code = handle(payload, emit)
        conn.send(("done", code))
    except (ClientGone, OSError):
        log("the client hung up: job abandoned")
        return
    log(f"job done in {time.perf_counter() - started:.1f} s, exit code {code}")
