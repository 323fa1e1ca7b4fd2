"""The client's side of the server: start one when none answers, hand it a job, show what it streams back.

A client that finds no server starts one under the socket's lock (`fcntl.flock`), so racing clients
start one between them. A server that is going away closes its socket first, so a client sees its
connection fail and retries, starting a new server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import AuthenticationError, Client, Connection
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError
from cosmos_t2.service.address import Address, authkey, locked
from cosmos_t2.service.allocation import allocation_id, srun_path, step_command, step_environment

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"

START_TIMEOUT_S = 180.0  # a cold start on a GPU node: imports and CUDA init, before the first job
LOG_ROTATE_BYTES = 1 << 20
CONNECT_ATTEMPTS = 3  # a server may exit between our connect and its accept: then start another


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


def server_command(
    address: Address, server_args: list[str], env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str] | None]:
    """The command that starts `address`'s server, and its environment (None: this process's).

    Inside a SLURM allocation it is a job step of its own (`service.allocation`), since the job step this
    client runs in ends every process it started; elsewhere a child process in a session of its own."""
    env = os.environ if env is None else env
    serve = [sys.executable, "-m", "cosmos_t2.cli", "serve", "--socket", str(address.socket), *server_args]
    job_id = allocation_id(env)
    srun = srun_path() if job_id else None
    if job_id is None or srun is None:
        return serve, None
    # SLURM sets a step's CUDA_VISIBLE_DEVICES to the GPUs it gives the step (all of the allocation's); the
    # server is for the client's (a GPU slot's, `--gpu-slots`), so it sets the client's again in the step
    devices = env.get(VISIBLE_DEVICES)
    pin = ["env", f"{VISIBLE_DEVICES}={devices}"] if devices is not None else []
    return [*step_command(job_id, str(address.log), srun), *pin, *serve], step_environment(env)


def start_server(address: Address, server_args: list[str]) -> subprocess.Popen[bytes]:
    """Start `address`'s server (`server_command`), in a session of its own: it outlives this job."""
    if address.log.exists() and address.log.stat().st_size > LOG_ROTATE_BYTES:
        address.log.replace(address.log.with_suffix(".log.1"))
    command, env = server_command(address, server_args)
    with open(address.log, "ab") as log:  # a SLURM step's srun writes here only its own errors
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=address.socket.parent, env=env, start_new_session=True)  # fmt: skip


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


def start_ahead(address: Address, server_args: list[str]) -> threading.Thread:
    """Start `address`'s server now, on a thread, unless one answers: what its first client would do, ahead
    of it and under the same lock (a client that comes meanwhile waits for this server, never starts a
    second). Errors go to stderr: the client that comes next starts one itself."""

    def run() -> None:
        try:
            conn = connect_or_start(address, server_args)
            with conn:
                conn.send(("status", None))  # a request, so its log shows no dropped connection
                conn.recv()
        except (CosmosError, EOFError, OSError) as exc:
            print(f"cosmos-t2: could not start the server ahead of the jobs: {exc}", file=sys.stderr)

    thread = threading.Thread(target=run, name="cosmos-t2-start-server", daemon=True)
    thread.start()
    return thread


def submit(address: Address, payload: Any, *, server_args: list[str], on_event: Callable[[Any], None]) -> int:
    """Run `payload` on the server (started if needed); each event it streams goes to `on_event`; its exit
    code."""
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
                kind, body = conn.recv()
            except (EOFError, OSError):
                raise CosmosError(f"the cosmos-t2 server (pid {pid}) ended during the job, which left no outputs "
                                  "(this file is the server's log)", file=address.log) from None  # fmt: skip
            if kind == "done":
                return int(body)
            on_event(body)


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
