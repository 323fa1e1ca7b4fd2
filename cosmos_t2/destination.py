"""Is there room to write? Checked before the work, so a job fails in seconds instead of after an hour.

`check_destination(folder, names, expected_bytes)` makes sure the output folder exists or can be created
(and is a folder), accepts a file (it writes and removes a probe), that each output name fits the file
system's limit on a name (NAME_MAX, in bytes), and that the free space covers the expected outputs. Each
failure is one `CosmosError` naming the path. `estimate_video_bytes` is the estimate commands use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cosmos_t2.errors import CosmosError

_DEFAULT_NAME_MAX = 255  # Linux, macOS and Windows file systems alike, where pathconf cannot tell
# Bytes per pixel of the worst case, uniform noise (measured: H.264 crf 18 0.67, FFV1 3.33, above raw RGB);
# real footage and model outputs take a small part of that (the tiny model's mp4s: ~0.1). An upper bound
# on purpose: a job should not fail for space after an hour, and a video is small beside a free disk.
_H264_BYTES_PER_PIXEL = 1.0
_FFV1_BYTES_PER_PIXEL = 3.5
_MARGIN_BYTES = 1 << 20  # sidecars, container overhead


def estimate_video_bytes(num_frames: int, height: int, width: int, *, lossless: bool = False) -> int:
    """An upper estimate of one encoded video's size. While it is written, a video takes up to twice
    that (the labelled copy is remuxed from the encoded one), which callers add themselves."""
    per_pixel = _FFV1_BYTES_PER_PIXEL if lossless else _H264_BYTES_PER_PIXEL
    return int(num_frames * height * width * per_pixel) + _MARGIN_BYTES


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of `folder` (an existing folder) accepts."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows) or no answer for this path
        return _DEFAULT_NAME_MAX


def check_names(folder: Path, names: Iterable[str], *, limit: int | None = None) -> None:
    limit = limit if limit is not None else name_max(_existing_ancestor(folder))
    for name in names:
        size = len(os.fsencode(name))
        if size > limit:
            raise CosmosError(
                f"output name is {size} bytes, longer than this file system allows ({limit}); use a shorter name",
                file=folder / name,
            )


def check_destination(folder: str | Path, names: Iterable[str] = (), expected_bytes: int = 0) -> Path:
    """Check that `folder` (existing or not) can take `names` and `expected_bytes`; returns it."""
    folder = Path(folder)
    limit = name_max(_existing_ancestor(folder))
    for part in folder.parts:  # a too-long folder name fails every stat of a path through it
        if len(os.fsencode(part)) > limit:
            raise CosmosError(
                f"a folder name in this path is longer than this file system allows ({limit} bytes)",
                file=folder,
            )
    _check_is_folder(folder)
    check_names(folder, names, limit=limit)
    # Probe where the first file (or the missing folder) will be created; nothing is left behind.
    where = _existing_ancestor(folder)
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".cosmos-t2-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "write in the output folder" if where == folder else f"create the output folder in {where}"
        raise CosmosError(f"cannot {what} ({exc.strerror or exc})", file=folder) from exc
    check_free_space(folder, expected_bytes)
    return folder


def check_free_space(folder: Path, expected_bytes: int) -> None:
    if expected_bytes <= 0:
        return
    free = shutil.disk_usage(_existing_ancestor(folder)).free
    if free < expected_bytes:
        raise CosmosError(
            f"not enough free space: the outputs need about {_mib(expected_bytes)}, {_mib(free)} free",
            file=folder,
        )


def check_output_file(path: str | Path, expected_bytes: int = 0) -> Path:
    """`check_destination` for a command that writes one file: its folder, its name, its size; and the
    path itself must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise CosmosError("the output path is a folder; give a file name", file=path)
    check_destination(path.parent if str(path.parent) else Path("."), [path.name], expected_bytes)
    return path


def _check_is_folder(folder: Path) -> None:
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                what = "the output folder" if part == folder else f"{part} (in the output folder's path)"
                raise CosmosError(f"{what} is a file, not a folder", file=folder)
            return


def _existing_ancestor(folder: Path) -> Path:
    for part in (folder, *folder.parents):
        try:
            if part.is_dir():
                return part
        except OSError:  # e.g. a name too long to look up: its parent answers
            continue
    return Path(".")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
