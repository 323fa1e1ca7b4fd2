"""The sidecar's provenance: checkpoint sha256s (hashed once, then cached by size and mtime), git state,
library versions."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cosmos_t2.runtime import provenance as prov
from cosmos_t2.weights import hashes
from cosmos_t2.weights.locate import ModelFiles


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file actually read for hashing."""
    calls: list[Path] = []
    real = hashes.sha256_file

    def counting(path: Path, chunk: int = 1 << 23) -> str:
        calls.append(Path(path))
        return real(path, chunk)

    monkeypatch.setattr(hashes, "sha256_file", counting)
    return calls


def test_a_file_is_hashed_once_then_served_from_the_cache(tmp_path: Path, counted: list[Path]) -> None:
    weights = tmp_path / "edge.pt"
    weights.write_bytes(b"weights" * 1000)
    cache_file = tmp_path / "cache" / "file-hashes.json"
    want = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert hashes.FileHashCache(cache_file).sha256(weights) == want
    assert hashes.FileHashCache(cache_file).sha256(weights) == want  # a new process: the JSON cache
    assert counted == [weights.resolve()]
    weights.write_bytes(b"other" * 1000)  # new size and mtime: hashed again
    assert hashes.FileHashCache(cache_file).sha256(weights) == hashlib.sha256(b"other" * 1000).hexdigest()
    assert len(counted) == 2


def test_hard_links_share_one_hash(tmp_path: Path, counted: list[Path]) -> None:
    """A model folder's slots are often hard links to one file (four controls: 24.5 s of hashing on the H200)."""
    weights = tmp_path / "edge.pt"
    weights.write_bytes(b"weights" * 1000)
    link = tmp_path / "vis.pt"
    os.link(weights, link)
    cache = hashes.FileHashCache(tmp_path / "hashes.json")
    assert cache.sha256(weights) == cache.sha256(link) == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert counted == [weights.resolve()]


def test_same_size_but_new_mtime_is_hashed_again(tmp_path: Path, counted: list[Path]) -> None:
    weights = tmp_path / "vae.pth"
    weights.write_bytes(b"a" * 64)
    cache = hashes.FileHashCache(tmp_path / "hashes.json")
    cache.sha256(weights)
    weights.write_bytes(b"b" * 64)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.sha256(weights) == hashlib.sha256(b"b" * 64).hexdigest() and len(counted) == 2


def test_checkpoint_hashes_cover_every_slot_and_folder_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSMOS_T2_CACHE_DIR", str(tmp_path / "cosmos-cache"))
    (tmp_path / "edge.pt").write_bytes(b"edge")
    (tmp_path / "tokenizer.pth").write_bytes(b"vae")
    encoder = tmp_path / "text_encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text("{}")
    (encoder / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (encoder / "model-00002-of-00002.safetensors").write_bytes(b"two")
    files = ModelFiles({"edge": tmp_path / "edge.pt"}, tmp_path / "tokenizer.pth", encoder, None, False)
    found = hashes.checkpoint_hashes(files)
    assert found == {
        "edge": hashlib.sha256(b"edge").hexdigest(),
        "vae": hashlib.sha256(b"vae").hexdigest(),
        "text_encoder": {
            "model-00001-of-00002.safetensors": hashlib.sha256(b"one").hexdigest(),
            "model-00002-of-00002.safetensors": hashlib.sha256(b"two").hexdigest(),
        },
    }
    assert (tmp_path / "cosmos-cache" / hashes.HASH_CACHE_NAME).is_file()
    assert hashes.checkpoint_hashes(ModelFiles({}, None, None, None, False)) is None  # tiny: no files


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_reads_the_commit_and_the_dirty_flag(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    state = prov.git_state(tmp_path)
    assert state == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "a.txt").write_text("two")
    assert prov.git_state(tmp_path) == {"commit": state["commit"], "dirty": True}
    assert prov.git_state(tmp_path / "not-a-checkout") is None


def test_library_versions_read_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "_started_by_snakemake", lambda: True)
    found = prov.library_versions()
    assert {"python", "numpy", "pyav", "opencv", "torch", "transformers", "snakemake"} <= found.keys()
