"""What reproducing or comparing a result needs, recorded in every sidecar.

`provenance(checkpoint_sha256)`: the project's version and git commit (with a dirty flag, when it runs from a
checkout), the command line, the host, an ISO 8601 UTC timestamp, and the sha256 of every weight file the job
loaded (`checkpoint_hashes`). `library_versions()`: the libraries that decide the numbers (numpy, PyAV, OpenCV,
torch, transformers, diffusers when installed, snakemake when a Snakemake job started us).

Hashing a 5 GB checkpoint took about 5 s on the H200 machine (2026-12-01) and longer on slow disks, so hashes
are cached in one small JSON file, `$COSMOS_T2_CACHE_DIR/file-hashes.json` (default ~/.cache/cosmos-t2), keyed
by the file itself (device and inode, so the hard-linked slots of a model folder share one entry) and valid
while its size and modification time are unchanged. Several jobs of a
sweep may write it at once: the writes are atomic and the last one wins, so at worst a hash is computed again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmos_t2 import __version__
from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.model.text import cache_root
from cosmos_t2.pipeline.models import ModelFiles

HASH_CACHE_NAME = "file-hashes.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
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


def sha256_file(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class FileHashCache:
    """sha256 of files, remembered by (device and inode, size, mtime) in a JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_root() / HASH_CACHE_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # absent or damaged: start afresh, it is only a cache
            return {}
        return data if isinstance(data, dict) else {}

    def sha256(self, path: Path) -> str:
        resolved = Path(path).resolve()
        stat = resolved.stat()
        key, stamp = f"{stat.st_dev}:{stat.st_ino}", {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        entry = self._read().get(key)
        if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp and "sha256" in entry:
            return str(entry["sha256"])
        digest = sha256_file(resolved)
        data = self._read()  # re-read: another job may have added entries meanwhile
        data[key] = {**stamp, "sha256": digest, "path": str(resolved)}  # the path for a reader only
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, data)
        except OSError:  # a read-only cache folder costs a re-hash next time, never the job
            pass
        return digest


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a transformers-style model folder (what decides its numbers)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def hash_path(path: Path, cache: FileHashCache) -> str | dict[str, str]:
    """A file's sha256, or {relative name: sha256} of a folder's weight files."""
    if Path(path).is_dir():
        return {str(p.relative_to(path)): cache.sha256(p) for p in weight_files(Path(path))}
    return cache.sha256(Path(path))


def checkpoint_hashes(files: ModelFiles, cache: FileHashCache | None = None) -> dict[str, Any] | None:
    """sha256 of every checkpoint the job uses: per modality, the VAE, the encoders; None when the job
    loads no file (the tiny random-weight model)."""
    slots: dict[str, Path | None] = {**files.checkpoints}
    slots.update(vae=files.vae, text_encoder=files.text_encoder, image_encoder=files.image_encoder)
    present = {k: Path(p) for k, p in slots.items() if p is not None and Path(p).exists()}
    if not present:
        return None
    cache = cache or FileHashCache()
    return {k: hash_path(p, cache) for k, p in present.items()}


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


def provenance(checkpoint_sha256: dict[str, Any] | None, *, argv: list[str] | None = None) -> dict[str, Any]:
    """`checkpoint_sha256`: `checkpoint_hashes` of the job's files, which the job computes on a thread while
    the GPU works."""
    return {
        "cosmos_t2": __version__,
        "git": git_state(),
        "command": list(sys.argv if argv is None else argv),
        "host": socket.gethostname(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "checkpoint_sha256": checkpoint_sha256,
    }
