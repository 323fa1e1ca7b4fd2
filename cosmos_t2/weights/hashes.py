"""sha256 of the weight files a job loads, cached by file so a 5 GB checkpoint is hashed once.

Hashing a 5 GB checkpoint took about 5 s on the H200 machine (2026-12-01) and longer on slow disks, so hashes
are cached in one small JSON file, `$COSMOS_T2_CACHE_DIR/file-hashes.json` (default ~/.cache/cosmos-t2), keyed
by the file itself (device and inode, so the hard-linked slots of a model folder share one entry) and valid
while its size and modification time are unchanged. Several jobs of a
sweep may write it at once: the writes are atomic and the last one wins, so at worst a hash is computed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.model.text import cache_root
from cosmos_t2.weights.locate import ModelFiles

HASH_CACHE_NAME = "file-hashes.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


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
