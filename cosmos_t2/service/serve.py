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
import math
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
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
HANDSHAKE_TIMEOUT_S = 5.0  # a connection gets this long to authenticate and send its request
CLEANUP_LOCK_S = 2.0  # how long an exiting server waits for the start lock before it cleans up without
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
    check_private_folder(folder)
    return folder


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


# --- client ------------------------------------------------------------------------------------------


def _connect(address: Address) -> Connection | None:
    """A connection to a live server, or None when none listens there (or it hung up: it was exiting)."""
    try:
        return Client(str(address.socket), family="AF_UNIX", authkey=authkey(address))
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError, EOFError):
        return None
    except AuthenticationError:
        pid = server_pid(address)
        who = f"the server there (pid {pid})" if pid is not None else "the server there"
        raise CosmosError(f"{who} holds another key (its key file was replaced as it answered); stop it with "
                          "`cosmos-t2 serve --stop` and retry", file=address.socket) from None  # fmt: skip


def server_pid(address: Address) -> int | None:
    """The pid in the address's pid file when that process is a cosmos-t2 server of this socket, else None.

    Checked against its command line, so a stale pid file never makes us signal another program."""
    try:
        pid = int(address.pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        owner = Path(f"/proc/{pid}").stat().st_uid
    except (OSError, ValueError):
        return None
    ours = owner == os.getuid() and b"serve" in cmdline and str(address.socket).encode() in cmdline
    return pid if ours else None


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
    """A "status" or "stop" answer from the address's server; None when none answers.

    A "stop" that cannot authenticate (the key file was deleted or replaced under the server) falls back
    to SIGTERM on the server named by the pid file, which ends it through its cleanup."""
    try:
        conn = _connect(address)
    except CosmosError:
        pid = server_pid(address) if kind == "stop" else None
        if pid is None:
            raise
        os.kill(pid, signal.SIGTERM)
        return {"pid": pid, "stopped_by": "SIGTERM (its key no longer matched)"}
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
    check_private_folder(address.socket.parent)  # `--socket` in a shared folder is refused like any other
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
    os.chmod(address.socket, 0o600)  # whatever the umask: only we may connect
    listener.listen(16)
    return listener


def _handshake(sock: socket.socket, address: Address, deadline_s: float) -> tuple[Connection, Any] | None:
    """Authenticate one accepted connection and read its request, all within `deadline_s` seconds.

    A client that never sends (stopped, or stuck before its first byte) must not hold the server, which
    runs one connection at a time: a timer shuts the socket down at the deadline, which ends any read in
    progress. The key is read from its file each time, so a key file deleted (a tmp cleaner) and made anew
    by the next client, or replaced by us, is the key; `authkey` refuses one that is not ours alone."""
    conn = Connection(os.dup(sock.fileno()))  # sock stays ours, for the timer's shutdown
    guard = threading.Lock()
    state = {"done": False}

    def expire() -> None:
        with guard:
            if not state["done"]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(deadline_s, expire)
    timer.daemon = True
    timer.start()
    try:
        key = authkey(address)
        deliver_challenge(conn, key)
        answer_challenge(conn, key)
        request_ = conn.recv()
    except BaseException:
        conn.close()
        raise
    finally:
        with guard:
            state["done"] = True
        timer.cancel()
        sock.close()
    return conn, request_


def serve(address: Address, handle: Handler, status: Callable[[], dict[str, Any]], *, idle_timeout: float,
          log: Callable[[str], None], handshake_timeout: float = HANDSHAKE_TIMEOUT_S) -> None:  # fmt: skip
    """Answer requests one at a time until `idle_timeout` seconds pass without one, or a "stop"."""
    if not (math.isfinite(idle_timeout) and idle_timeout > 0):  # nan would end the server at once
        raise CosmosError(f"the idle timeout must be a finite number of seconds > 0, not {idle_timeout}")
    authkey(address)  # a refused folder or key fails here, before the socket exists
    listener = _bind(address)
    inode = address.socket.stat().st_ino
    try:
        address.pid.write_text(f"{os.getpid()}\n")
        log(f"pid {os.getpid()} serving on {address.socket} (idle timeout {idle_timeout:g} s)")
        last_request = time.monotonic()
        while True:
            # from the last request, not the last connection: dropped connections do not keep us alive
            remaining = last_request + idle_timeout - time.monotonic()
            if remaining <= 0:
                log(f"no request for {idle_timeout:g} s: exiting")
                return
            listener.settimeout(remaining)
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.setblocking(True)
            try:
                conn, (kind, payload) = _handshake(sock, address, handshake_timeout)
            except (EOFError, OSError, AuthenticationError, CosmosError, ValueError, TypeError) as exc:
                log(f"dropped a connection before its request: {type(exc).__name__}: {exc}")
                continue
            last_request = time.monotonic()
            with conn:
                if kind != "job":
                    with contextlib.suppress(OSError):
                        conn.send((kind, status()))
                    if kind == "stop":
                        log("stopped on request")
                        return
                    continue
                _run(conn, payload, handle, log)
                last_request = time.monotonic()
    finally:
        listener.close()  # first: from here connecting fails, so no client waits on us
        # The client that started us may hold the lock while it waits for us to answer: a server failing
        # right after binding must not wait for it (both would wait out the client's start timeout).
        # Without the lock the inode check still keeps a successor's socket.
        with locked(address.lock, timeout=CLEANUP_LOCK_S):
            if address.socket.exists() and address.socket.stat().st_ino == inode:  # not a successor's
                address.socket.unlink()
            with contextlib.suppress(OSError):  # the error that ended us is the one to report
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
