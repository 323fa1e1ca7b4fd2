"""safetensors files with the same bytes in every process.

safetensors (0.8) keeps a file's `__metadata__` in a hash map, so its keys come out in another order in each
process (measured 2026-12-07: three processes saving the same tensors and metadata wrote three files), and an
embedding file, a converted checkpoint or anything hashed downstream would change from run to run. `save`
writes the library's own file and then puts the metadata keys in sorted order: the header keeps its length
(the same members, reordered) and the tensor data is untouched, so every reader still reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cosmos_t2.atomic import write_bytes_atomic

_LENGTH_BYTES = 8  # a little-endian u64 header length opens the file


def save(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors bytes of `tensors` (contiguous, CPU) with `metadata` in sorted key order."""
    from safetensors.torch import save as library_save

    data = library_save(tensors, metadata=metadata)
    if not metadata or len(metadata) < 2:
        return data
    length = int.from_bytes(data[:_LENGTH_BYTES], "little")
    header = json.loads(data[_LENGTH_BYTES : _LENGTH_BYTES + length])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # not the library's compact JSON: keep its file rather than guess
        return data
    return data[:_LENGTH_BYTES] + text.ljust(length, b" ") + data[_LENGTH_BYTES + length :]


def save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """`save` written to `path` atomically (temp file + rename)."""
    return write_bytes_atomic(path, save(tensors, metadata))
