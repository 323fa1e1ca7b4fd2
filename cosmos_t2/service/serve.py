"""A long-lived process that runs jobs for short-lived clients, over a Unix socket.

A GPU job started as its own process pays the imports, the model load and the compile before its first
step (about half of a distilled job on an H200). `infer --server` (and `render --server`) hands its job to
a server instead, which keeps one model pool for every job it runs; what the job does is the handler's
(`service.request.InferService`), this module only moves requests and the job's events.

Each job runs on a thread of its own, two at most (`MAX_RUNNING`), so that a render's mp4 write, which
needs no GPU, runs while the next job's steps do; the handler keeps the GPU's work to one job at a time.

Where it listens and who may connect is `service.address`; the client's side is `service.client`. A
server exits after `idle_timeout` seconds without a request, never under a running job. It closes its
socket before it removes the file, and removes it under the start lock only if it is still its own, so a
client never talks to a server that is going away without seeing the connection fail first.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import AuthenticationError, Connection, answer_challenge, deliver_challenge
from typing import Any

from cosmos_t2.errors import CosmosError
from cosmos_t2.service.address import Address, authkey, check_private_folder, locked

HANDSHAKE_TIMEOUT_S = 5.0  # a connection gets this long to authenticate and send its request
CLEANUP_LOCK_S = 2.0  # how long an exiting server waits for the start lock before it cleans up without
# Jobs past the handshake at once: one on the GPU and one writing its outputs (a render's mp4) beside it.
# More would hold more decoded videos in host memory and wait for the GPU anyway.
MAX_RUNNING = 2
IDLE_POLL_S = 1.0  # while jobs run, how often the loop looks again at the idle deadline

Emit = Callable[[Any], None]  # one event of the running job, to the client


class ClientGone(BaseException):
    """The client of the running job hung up (killed, or its Snakemake job cancelled): stop the job.

    A BaseException so that a batch's per-job `except Exception` does not take it for that job's failure."""


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
    reads one request at a time: a timer shuts the socket down at the deadline, which ends any read in
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
          log: Callable[[str], None], handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
          max_running: int = MAX_RUNNING) -> None:  # fmt: skip
    """Answer requests until `idle_timeout` seconds pass with none running or arriving, or a "stop".

    Each job runs on a thread of its own, at most `max_running` at once, the rest started in the order
    they came; what they may do at the same time (the GPU's work one at a time) is the handler's to say.
    Status and stop requests are answered at once; after a stop no job is taken, and the server exits when
    the running ones are done."""
    if not (math.isfinite(idle_timeout) and idle_timeout > 0):  # nan would end the server at once
        raise CosmosError(f"the idle timeout must be a finite number of seconds > 0, not {idle_timeout}")
    authkey(address)  # a refused folder or key fails here, before the socket exists
    listener = _bind(address)
    inode = address.socket.stat().st_ino
    jobs = _Jobs(max_running)
    try:
        address.pid.write_text(f"{os.getpid()}\n")
        log(f"pid {os.getpid()} serving on {address.socket} (idle timeout {idle_timeout:g} s)")
        while True:
            # from the last request started or finished, not the last connection: dropped connections do
            # not keep us alive, and a running job does
            remaining = jobs.idle_deadline(idle_timeout) - time.monotonic()
            if remaining <= 0:
                log(f"no request for {idle_timeout:g} s: exiting")
                return
            listener.settimeout(min(remaining, IDLE_POLL_S))  # a job ending moves the deadline
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
            jobs.touch()
            if kind == "job":
                jobs.start(conn, lambda conn=conn, payload=payload: _run(conn, payload, handle, log))
                continue
            with conn, contextlib.suppress(OSError):
                conn.send((kind, status()))
            if kind == "stop":
                running = jobs.running()
                log(f"stopped on request: exiting when its {running} running job(s) end" if running
                    else "stopped on request")  # fmt: skip
                jobs.wait()  # new clients wait in the backlog meanwhile, then find the socket closed
                return
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


class _Jobs:
    """The server's running jobs, each on its thread: at most `limit` at once, the others waiting in the
    order they came (each waiting one holds only its connection, not a decoded video), and the clock the
    idle timeout counts from."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise CosmosError(f"a server must run at least one job at a time, not {limit}")
        self.limit = limit
        self._changed = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()  # tickets of the jobs not started yet
        self._next_ticket = 0
        self._active = 0  # started, not done
        self._threads = 0  # alive, waiting or started
        self._last = time.monotonic()

    def touch(self) -> None:
        with self._changed:
            self._last = time.monotonic()

    def idle_deadline(self, idle_timeout: float) -> float:
        with self._changed:
            return math.inf if self._threads else self._last + idle_timeout

    def running(self) -> int:
        with self._changed:
            return self._threads

    def start(self, conn: Connection, job: Callable[[], None]) -> None:
        """Run `job` on a thread of its own once the jobs taken before it have started and one of the
        `limit` places is free; `conn` is closed when it ends."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(ticket)
            self._threads += 1

        def target() -> None:
            started = False
            try:
                with self._changed:
                    while self._queue[0] != ticket or self._active >= self.limit:
                        self._changed.wait()
                    self._queue.popleft()
                    self._active += 1
                    started = True
                with conn:
                    job()
            finally:
                with self._changed:
                    if started:
                        self._active -= 1
                    elif ticket in self._queue:  # left at the head, it would block every later job
                        self._queue.remove(ticket)
                    self._threads -= 1
                    self._last = time.monotonic()
                    self._changed.notify_all()

        # daemon: SIGTERM ends the server through its cleanup without waiting for a job (whose outputs
        # appear whole or not at all)
        threading.Thread(target=target, name=f"job-{ticket}", daemon=True).start()

    def wait(self) -> None:
        """Until every job taken so far is done."""
        with self._changed:
            while self._threads:
                self._changed.wait()


def _run(conn: Connection, payload: Any, handle: Handler, log: Callable[[str], None]) -> None:
    def emit(event: Any) -> None:
        try:
            conn.send(("event", event))
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
    kind = getattr(payload, "kind", "")  # infer, render: which stage the log's line is of
    log(f"{kind} job done in {time.perf_counter() - started:.1f} s, exit code {code}".lstrip())
