"""Atomic file writes: every output appears whole or not at all.

A writer gets a temporary path in the destination's folder (same file system, same suffix so that FFmpeg or
safetensors pick the same format); only when it has finished is the file renamed over the destination. An
interrupted run leaves at most a hidden `.name.*` temp file, never a half-written output that a resumed
workflow would trust.

Outputs of several files (a video and its sidecar JSON) are an `OutputSet`: every file is finished under a
temp name first, then they are published in order with the completion record (the sidecar) last. Before the
first rename the old completion record is removed, so a reader that checks for it never pairs an old record
with new files; if a rename fails, every final name of the set is removed again. What a SIGKILL between two
renames (microseconds apart) can leave is files without their completion record: readers treat those as
unfinished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TEMP_STEM_BYTES = (
    40  # temp names stay short, so a final name that fits the file system's limit never fails here
)


def _temp_beside(path: Path) -> Path:
    stem = path.stem.encode("utf-8")[:_TEMP_STEM_BYTES].decode("utf-8", errors="ignore")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    return Path(name)


def _publish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make outputs private to this user
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it to `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OutputSet:
    """Files that appear together: `stage(final)` gives the temp path to write, `publish()` renames them
    all, the file staged with `record=True` (the completion record) last."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temp, final), in publishing order
        self._record: tuple[Path, Path] | None = None

    def stage(self, final: str | Path, *, record: bool = False) -> Path:
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(final)
        if record:
            if self._record is not None:
                raise ValueError("an output set has one completion record")
            self._record = (tmp, final)
        else:
            self._staged.append((tmp, final))
        return tmp

    def staged(self, final: str | Path) -> Path:
        """The temp path `final` was staged at (to read a staged file before it is published)."""
        for tmp, staged_final in self._order():
            if staged_final == Path(final):
                return tmp
        raise KeyError(f"not staged: {final}")

    @property
    def finals(self) -> list[Path]:
        return [final for _, final in self._order()]

    def _order(self) -> list[tuple[Path, Path]]:
        return [*self._staged, *([self._record] if self._record else [])]

    def publish(self) -> None:
        if self._record is not None:
            self._record[1].unlink(missing_ok=True)  # an old record must not vouch for the new files
        try:
            for tmp, final in self._order():
                _publish(tmp, final)
        except BaseException:
            for final in self.finals:
                final.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        for tmp, _ in self._order():
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_outputs() -> Iterator[OutputSet]:
    """An `OutputSet` published when the block ends without error; its temp files are removed either way."""
    outputs = OutputSet()
    try:
        yield outputs
        outputs.publish()
    finally:
        outputs.discard()


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
