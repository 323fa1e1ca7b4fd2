"""What reproducing or comparing a result needs, recorded in every sidecar.

`provenance(checkpoint_sha256, command=...)`: the project's version and git commit (with a dirty flag, when it
runs from a checkout), the command line that asked for the job (given: a server's job was asked for by its
client's), the host, an ISO 8601 UTC timestamp, and the sha256 of every weight file the job
loaded (`checkpoint_hashes`). `library_versions()`: the libraries that decide the numbers (numpy, PyAV, OpenCV,
torch, transformers, diffusers when installed, snakemake when a Snakemake job started us).

The weight files' hashes are `weights.hashes`.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmos_t2 import __version__

GIT_TIMEOUT_S = 5.0
# distribution name -> the key it is recorded under
LIBRARIES = {
    "numpy": "numpy",
    "av": "pyav",
    "opencv-python-headless": "opencv",
    "opencv-python": "opencv",
    "torch": "torch",
    "transformers": "transformers",
    "diffusers": "diffusers",
    "safetensors": "safetensors",
    "huggingface-hub": "huggingface_hub",
}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the checkout the package runs from; None when it is not one (an install)."""
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _started_by_snakemake(levels: int = 6) -> bool:
    """Whether an ancestor process is Snakemake (its shell jobs get no marker in the environment)."""
    pid = os.getppid()
    for _ in range(levels):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # not Linux, or the parent is gone
            return False
        if b"snakemake" in cmdline:
            return True
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4 (ppid); the name in () may hold spaces
        if pid <= 1:
            return False
    return False


def library_versions() -> dict[str, str]:
    """Python and every installed library of LIBRARIES (read from package metadata: nothing imported)."""
    out = {"python": platform.python_version()}
    for dist, key in LIBRARIES.items():
        if key in out:
            continue
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if _started_by_snakemake():
        try:
            out["snakemake"] = metadata.version("snakemake")
        except metadata.PackageNotFoundError:  # pragma: no cover - snakemake from another environment
            out["snakemake"] = "unknown"
    return out


def provenance(checkpoint_sha256: dict[str, Any] | None, *, command: list[str]) -> dict[str, Any]:
    """`checkpoint_sha256`: `checkpoint_hashes` of the job's files, which the job computes on a thread while
    the GPU works; `command`: the command line that asked for the job."""
    return {
        "cosmos_t2": __version__,
        "git": git_state(),
        "command": list(command),
        "host": socket.gethostname(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "checkpoint_sha256": checkpoint_sha256,
    }
