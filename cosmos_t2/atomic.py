"""Atomic file writes: every output appears whole or not at all.

A writer gets a temporary path in the destination's folder (same file system, same suffix so that FFmpeg or
safetensors pick the same format); only when it has finished is the file renamed over the destination. An
interrupted run leaves at most a hidden `.name.*` temp file, never a half-written output that a resumed
workflow would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it to `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make outputs private to this user
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any, **dump_options: Any) -> Path:
    """JSON with a trailing newline; `dump_options` go to json.dumps (indent 2 unless given)."""
    dump_options.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(data, **dump_options) + "\n")
