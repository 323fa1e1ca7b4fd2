"""A private folder for the diffusion servers a test starts, and the end of every server left in it."""

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
from contextlib import contextmanager
from pathlib import Path

from cosmos_t2.service.address import SERVE_DIR_ENV


@contextmanager
def private_serve_env() -> Iterator[dict[str, str]]:
    """An environment whose servers live in a fresh folder (short: a socket path must stay < 100 chars);
    every server that left its pid file there is stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))
    repo = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    try:
        yield {**os.environ, SERVE_DIR_ENV: str(folder), "PYTHONPATH": pythonpath}
    finally:
        for pid_file in folder.glob("*.pid"):
            pid = pid_file.read_text().strip()
            if pid.isdigit():
                stop_server(int(pid))
        shutil.rmtree(folder, ignore_errors=True)


def stop_server(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s` if the process is still there."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cosmos-t2 ARGS` as its own process in `cwd`, output captured."""
    command = [sys.executable, "-m", "cosmos_t2.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def status(env: dict[str, str], cwd: Path) -> dict:
    """The answer of `cosmos-t2 serve --status` for the server of `env`."""
    return json.loads(cli(["serve", "--status"], env, cwd).stdout)
