"""Test-only: a Hugging Face hub cache laid out as huggingface_hub writes it, holding tiny stand-ins for
every official file (same repositories, revisions and file names).

    <cache>/models--<org>--<name>/blobs/<etag>                        the bytes
    <cache>/models--<org>--<name>/snapshots/<commit>/<path> -> ../../blobs/<etag>
    <cache>/models--<org>--<name>/refs/<branch>                       the commit a branch points at

LFS files (weights) have the sha256 of their bytes as etag, small git files a 40-hex git hash, as on
the Hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path

from cosmos_t2.weights.official import FOLDER_PATTERNS, OfficialFile, Selection, official_files

EVERYTHING = Selection(distilled=True, image_encoder=True)
FAKE_MAIN_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _commit(item: OfficialFile) -> str:
    return FAKE_MAIN_COMMIT if item.revision == "main" else item.revision


def add_file(cache: Path, repo: str, commit: str, name: str, data: bytes, *, lfs: bool) -> None:
    root = cache / f"models--{repo.replace('/', '--')}"
    etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(data).hexdigest()
    blob = root / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = root / "snapshots" / commit / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))


def set_ref(cache: Path, repo: str, branch: str, commit: str) -> None:
    ref = cache / f"models--{repo.replace('/', '--')}" / "refs" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def stand_in(source: str, name: str) -> bytes:
    """Tiny bytes of the format `name` says (`models check` reads the header): a zip for .pt/.pth, a
    tensorless safetensors file; deterministic, so a blob's sha256 is the same in every run."""
    text = f"stand-in for {source}".encode()
    if name.endswith((".pt", ".pth")):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(zipfile.ZipInfo("stand_in/data.pkl", date_time=(2020, 1, 1, 0, 0, 0)), text)
        return buffer.getvalue()
    if name.endswith(".safetensors"):
        header = json.dumps({"__metadata__": {"stand_in": source}}).encode()
        return struct.pack("<Q", len(header)) + header
    return text


def build_fake_hub(cache: Path, selection: Selection = EVERYTHING) -> dict[str, bytes]:
    """Every official file of `selection` in `cache`; returns slot -> the bytes stored for it (a folder
    slot: its weight file's bytes)."""
    stored: dict[str, bytes] = {}
    for item in official_files(selection):
        commit = _commit(item)
        data = stand_in(item.source, item.filename or "model.safetensors")
        if item.filename is not None:
            add_file(cache, item.repo, commit, item.filename, data, lfs=True)
        else:
            add_file(cache, item.repo, commit, "config.json", b'{"model_type": "stand-in"}', lfs=False)
            add_file(cache, item.repo, commit, "model.safetensors", data, lfs=True)
            add_file(cache, item.repo, commit, "pytorch_model.bin", data, lfs=True)  # not in FOLDER_PATTERNS
        if item.revision == "main":
            set_ref(cache, item.repo, "main", commit)
        stored[item.slot] = data
    assert "*.bin" not in FOLDER_PATTERNS
    return stored
