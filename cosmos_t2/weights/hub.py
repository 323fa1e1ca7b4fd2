"""`cosmos-t2 models fetch|check`: lay out a model folder from the Hugging Face Hub, and verify one.

Fetching goes through `huggingface_hub` into its cache (`--cache-dir`, else HF_HUB_CACHE /
~/.cache/huggingface/hub), then puts each file at its slot of the folder (`weights.official`): a symlink
into the cache's snapshot (so a checkpoint is stored once and its link still carries the official UUID
name), or a copy with `--copy`. Offline (`--offline`, or HF_HUB_OFFLINE=1) it uses only what the cache
holds; `--endpoint URL` (or HF_ENDPOINT) points at a mirror. The folder gets a manifest,
`cosmos-t2-models.json`: each slot's repository, revision, file, size and, for files the Hub stores in LFS
(whose cache blob is named by its sha256), the sha256 to check against later.

Checking needs no network: every slot the selection asks for is there, each network checkpoint is of its
slot's modality (by UUID or metadata, as `infer` checks), sizes are read, and files whose sha256 is known
from the manifest are hashed (cached by size and mtime, `provenance.FileHashCache`) and compared. Last,
`locate_models` runs as `infer` will, so a folder that passes here is one `infer --model-dir` accepts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.errors import CosmosError
from cosmos_t2.weights.hashes import FileHashCache, weight_files
from cosmos_t2.weights.locate import CHECKPOINT_SUFFIXES, checkpoint_identity, locate_models
from cosmos_t2.weights.official import FOLDER_PATTERNS, OfficialFile, Selection, official_files

MANIFEST = "cosmos-t2-models.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SlotReport:
    """What `check_folder` found at one slot."""

    slot: str
    ok: bool
    detail: str
    path: str | None = None
    size_bytes: int | None = None
    modality: str | None = None
    sha256: str | None = None
    source: str | None = None


# --- fetch -------------------------------------------------------------------------------------------


def _hub_error(exc: Exception, item: OfficialFile, offline: bool) -> CosmosError:
    from huggingface_hub import errors

    where = item.source
    if isinstance(exc, errors.GatedRepoError):
        why = f"{item.repo} is gated: accept its licence on huggingface.co/{item.repo}, then `hf auth login`"
    elif isinstance(exc, errors.LocalEntryNotFoundError) or offline:
        why = "not in the local hub cache (offline); fetch it once online, or pass --cache-dir / --endpoint"
    elif isinstance(exc, errors.RepositoryNotFoundError | errors.RevisionNotFoundError):
        why = "repository or revision not found (a private mirror needs --endpoint and a token)"
    else:
        why = f"download failed: {exc}"
    return CosmosError(why, file=where)


def _download(item: OfficialFile, cache_dir: Path | None, endpoint: str | None, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    common: dict[str, Any] = {
        "revision": item.revision,
        "cache_dir": None if cache_dir is None else str(cache_dir),
        "local_files_only": offline,
    }
    if endpoint is not None:
        common["endpoint"] = endpoint
    try:
        if item.filename is not None:
            return Path(hf_hub_download(item.repo, item.filename, **common))
        return Path(snapshot_download(item.repo, allow_patterns=list(FOLDER_PATTERNS), **common))
    except Exception as exc:  # huggingface_hub's errors, and OSError from the cache
        raise _hub_error(exc, item, offline) from exc


def _place(source: Path, dest: Path, copy: bool) -> None:
    """Put `source` (a snapshot file or folder) at `dest`, replacing a previous link or file atomically."""
    if dest.is_dir() and not dest.is_symlink():
        raise CosmosError("already a folder here; remove it to fetch it again", file=dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.is_dir():
        shutil.rmtree(tmp)
    if not copy:
        tmp.symlink_to(source.absolute(), target_is_directory=source.is_dir())
    elif source.is_dir():  # real files (the cache's links followed), only those transformers loads
        shutil.copytree(source, tmp, ignore=_not_loaded)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def _not_loaded(folder: str, names: list[str]) -> set[str]:
    keep = {n for n in names if (Path(folder) / n).is_dir() or any(fnmatch(n, p) for p in FOLDER_PATTERNS)}
    return set(names) - keep


def _blob_sha256(path: Path) -> str | None:
    """The sha256 of a hub-cache file when its blob is an LFS object (named by its sha256)."""
    name = path.resolve().name
    return name if _SHA256.fullmatch(name) else None


def _manifest_entry(item: OfficialFile, source: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "repo": item.repo,
        "revision": item.revision,
        "filename": item.filename,
        "licence": item.licence,
        "modality": item.modality,
    }
    if item.is_folder:
        entry["files"] = {
            str(p.relative_to(source)): {"size": p.stat().st_size, "sha256": _blob_sha256(p)}
            for p in weight_files(source)
        }
    else:
        entry.update(size=source.stat().st_size, sha256=_blob_sha256(source))
    return entry


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("slots", {}))
    except (ValueError, AttributeError) as exc:
        raise CosmosError(f"not a model-folder manifest: {exc}", file=path) from exc


def fetch_folder(
    folder: Path,
    selection: Selection,
    *,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    offline: bool = False,
    copy: bool = False,
) -> list[tuple[OfficialFile, Path]]:
    """Download (or find in the cache) every official file `selection` asks for and lay it out in
    `folder`; returns (file, where it came from) per slot. Writes the manifest last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offline = offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    manifest = read_manifest(folder)
    done = []
    for item in official_files(selection):
        source = _download(item, cache_dir, endpoint, offline)
        _place(source, folder / item.slot, copy)
        manifest[item.slot] = _manifest_entry(item, source)
        done.append((item, source))
    write_json_atomic(folder / MANIFEST, {"slots": manifest}, indent=2, sort_keys=True)
    return done


# --- check -------------------------------------------------------------------------------------------


def _find_file(folder: Path, slot: str) -> Path | None:
    stem = Path(slot).stem
    for suffix in CHECKPOINT_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format (PyTorch >= 1.6)
SAFETENSORS_HEADER_MAX = 100 << 20  # safetensors itself refuses a larger header


def format_problem(path: Path) -> str | None:
    """Why `path` is not the kind of file its name says (None when it is), from its first bytes only.

    .pt/.pth: a torch.save archive (zip), or the legacy pickle format (protocol 2-5); .safetensors: an
    8-byte little-endian header length followed by that many bytes of JSON object. Catches a text file or
    an HTML error page saved under a checkpoint's name, which a size or presence check passes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if path.suffix in (".pt", ".pth"):
                if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
                    return None
                return f"not a PyTorch checkpoint (a {path.suffix} file starts with a zip or pickle header)"
            if path.suffix == ".safetensors":
                size = path.stat().st_size
                length = int.from_bytes(head, "little") if len(head) == 8 else 0
                if not 2 <= length <= min(SAFETENSORS_HEADER_MAX, size - 8):
                    return "not a safetensors file (no valid header length)"
                try:
                    header = json.loads(f.read(length))
                except (ValueError, UnicodeDecodeError):
                    header = None
                return None if isinstance(header, dict) else "not a safetensors file (its header is not JSON)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _check_file(
    item: OfficialFile, folder: Path, manifest: dict[str, Any], cache: FileHashCache | None
) -> SlotReport:
    path = _find_file(folder, item.slot)
    stem = Path(item.slot).stem
    if path is None:
        return SlotReport(item.slot, False, f"missing: {stem}.pt or {stem}.safetensors", source=item.source)
    size = path.stat().st_size
    problem = format_problem(path)
    if problem is not None:
        return SlotReport(item.slot, False, problem, str(path), size, source=item.source)
    modality = None
    if item.modality is not None:
        modality, _ = checkpoint_identity(path)
        if modality is None:
            modality = (manifest.get(path.name) or {}).get("modality")
        if modality is not None and modality != item.modality:
            return SlotReport(
                item.slot, False, f"this is the {modality} checkpoint, not {item.modality}", str(path), size,
                modality, source=item.source,
            )  # fmt: skip
    expected = (manifest.get(path.name) or {}).get("sha256")
    if expected is None or cache is None:
        detail = "present" + (
            "" if item.modality is None or modality else " (modality not recorded in its name)"
        )
        return SlotReport(item.slot, True, detail, str(path), size, modality, source=item.source)
    digest = cache.sha256(path)
    if digest != expected:
        return SlotReport(
            item.slot, False, f"sha256 {digest[:12]}... differs from the fetched {expected[:12]}...", str(path),
            size, modality, digest, item.source,
        )  # fmt: skip
    return SlotReport(item.slot, True, "sha256 matches", str(path), size, modality, digest, item.source)


def _check_folder_model(
    item: OfficialFile, folder: Path, manifest: dict[str, Any], cache: FileHashCache | None
) -> SlotReport:
    path = folder / item.slot
    if not (path / "config.json").is_file():
        return SlotReport(item.slot, False, "missing: a folder with config.json", source=item.source)
    weights = weight_files(path)
    if not weights:
        return SlotReport(item.slot, False, "no weight files (*.safetensors)", str(path), source=item.source)
    size = sum(p.stat().st_size for p in weights)
    problems = [f"{p.relative_to(path)}: {why}" for p in weights if (why := format_problem(p)) is not None]
    if problems:
        return SlotReport(item.slot, False, "; ".join(problems), str(path), size, source=item.source)
    known = (manifest.get(item.slot) or {}).get("files") or {}
    bad = []
    checked = 0
    for p in weights:
        expected = (known.get(str(p.relative_to(path))) or {}).get("sha256")
        if expected is not None and cache is not None:
            checked += 1
            if cache.sha256(p) != expected:
                bad.append(p.name)
    if bad:
        return SlotReport(
            item.slot, False, f"sha256 differs: {', '.join(bad)}", str(path), size, source=item.source
        )
    detail = f"{len(weights)} weight file(s)" + (f", {checked} sha256 match" if checked else "")
    return SlotReport(item.slot, True, detail, str(path), size, source=item.source)


def check_folder(folder: Path, selection: Selection, *, hashes: bool = True) -> list[SlotReport]:
    """One report per slot `selection` asks for, then `infer`'s own check of the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CosmosError("model folder not found", file=folder)
    manifest = read_manifest(folder)
    cache = FileHashCache() if hashes else None
    reports = [
        (_check_folder_model if item.is_folder else _check_file)(item, folder, manifest, cache)
        for item in official_files(selection)
    ]
    try:
        locate_models(
            folder, list(selection.modalities), tiny=False, need_text_encoder=selection.text_encoder,
            need_image_encoder=selection.image_encoder,
        )  # fmt: skip
        accepted = all(r.ok for r in reports)  # infer finds the files; whether they are sound is above
        reports.append(SlotReport("(infer)", True, "`infer --model-dir` accepts this folder" if accepted else
                                  "`infer --model-dir` finds every file here (the failures above are in them)"))  # fmt: skip
    except CosmosError as exc:
        reports.append(SlotReport("(infer)", False, exc.reason))
    return reports


def reports_json(reports: list[SlotReport]) -> list[dict[str, Any]]:
    return [asdict(r) for r in reports]
