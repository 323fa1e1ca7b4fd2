"""Official Cosmos-Transfer2.5 checkpoints (.pt or .safetensors) into TransferNet, strictly.

Our module names are the official ones, so loading needs no per-key renaming: only wrapper prefixes are stripped
(`net.`, `module.`, `_orig_mod.`, `model.`) and entries that are not network weights are dropped: Transformer
Engine's `_extra_state`, training counters `accum_*`, the RoPE buffers `pos_embedder.{seq,dim_spatial_range,
dim_temporal_range}` (recomputed from the config) and, when keys carry the `net.` prefix, everything outside it.
This is the same filtering as diffusers' `scripts/convert_cosmos_to_diffusers.py` (TRANSFORMER_SPECIAL_KEYS_REMAP).

Loading never goes partial: a missing, unexpected or mis-shaped key is a CosmosError that lists them.

Several modalities (official multi-branch inference): one file per modality; the backbone comes from the first,
control branch n from file n (`control_blocks.*` -> `control_blocks_{n}.*`, `control_embedder.*` ->
`control_embedder.{n}.*`, the official `load_multi_branch_checkpoints` renaming).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from cosmos_t2 import stable_safetensors
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.control import TransferNet

WRAPPER_PREFIXES = ("net.", "module.", "_orig_mod.", "model.")
DERIVED_KEYS = frozenset(
    {"pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range"}
)
_LISTED = 8  # keys named per category in an error message


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a checkpoint file, unwrapped from {"model": ...}-style containers."""
    path = Path(path)
    if not path.is_file():
        raise CosmosError("checkpoint file not found", file=path)
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as exc:  # safetensors raises its own error type or OSError
            raise CosmosError(
                f"not a readable safetensors file (truncated or corrupt?): {exc}", file=path
            ) from exc
    try:
        obj = _torch_load(path)
    except Exception as exc:
        raise CosmosError(torch_load_refusal(exc), file=path) from exc
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CosmosError("the file holds no state dict of tensors", file=path)
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def torch_load_refusal(exc: BaseException) -> str:
    """Why `torch.load(weights_only=True)` refused a file, in our words: PyTorch's own message advises
    loading with weights_only=False, which would run whatever code the file holds."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found:
        return (
            f"refused: the file holds a pickled Python object ({found.group(1)}) besides tensors, and "
            "unpickling it could run code; save only the state dict of tensors (or a .safetensors file)"
        )
    return "not a readable PyTorch checkpoint (truncated or corrupt?)"


def _torch_load(path: Path) -> object:
    # mmap keeps a 2B checkpoint out of RAM until used; files in the legacy (non-zip) format cannot be mmapped.
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def official_state_dict(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(network weights by official key, keys that were dropped as non-weights)."""
    has_net = any(k.startswith("net.") for k in raw)
    weights: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        if has_net and not key.startswith("net."):
            dropped.append(key)
            continue
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "_extra_state" or leaf.startswith("accum_") or name in DERIVED_KEYS:
            dropped.append(key)
        else:
            weights[name] = value
    return weights, dropped


def expected_keys(config: object, num_control_branches: int = 1) -> dict[str, tuple[int, ...]]:
    """The official key set (key -> shape) of the network for `config`, from a meta-device build."""
    with torch.device("meta"):
        net = TransferNet(config, num_control_branches=num_control_branches)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def mismatch_report(
    model: nn.Module | dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]
) -> str | None:
    """None when `state` has exactly the keys and shapes of `model` (a module, or an `expected_keys` dict),
    else a readable list of the differences."""
    if isinstance(model, nn.Module):
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    else:
        expected = model
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = [
        f"{k} {tuple(state[k].shape)} in file vs {expected[k]} in network"
        for k in sorted(expected.keys() & state.keys())
        if tuple(state[k].shape) != expected[k]
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            more = f", ... and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
            parts.append(f"{len(items)} {label} key(s): {', '.join(items[:_LISTED])}{more}")
    return "; ".join(parts) or None


def load_state_dict_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype | None = None,
    file: str | Path | None = None,
) -> None:
    """Load official-keyed weights; all or nothing. A model built on the meta device takes the tensors as they
    are (cast to `dtype` if given): no second copy of 2B weights is made."""
    report = mismatch_report(model, state)
    if report:
        name = type(model).__name__
        raise CosmosError(f"checkpoint does not match the {name} network: {report}", file=file)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(state, strict=True, assign=on_meta)


def _branch_keys(state: dict[str, torch.Tensor], branch: int) -> dict[str, torch.Tensor]:
    """A single-branch file's control keys renamed into multi-branch slot `branch`."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("control_embedder."):
            renamed[f"control_embedder.{branch}.{key.removeprefix('control_embedder.')}"] = value
        elif key.startswith("control_blocks."):
            renamed[f"control_blocks_{branch}.{key.removeprefix('control_blocks.')}"] = value
    return renamed


def load_checkpoint(
    model: nn.Module, paths: str | Path | Sequence[str | Path], *, dtype: torch.dtype | None = None
) -> list[str]:
    """Load one checkpoint, or one per control branch (first = backbone + branch 0). Returns dropped keys."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    branches = getattr(model, "num_control_branches", 1)
    if len(paths) not in (1, branches):
        raise CosmosError(
            f"{len(paths)} checkpoint files given for a network with {branches} control branches"
        )
    dropped: list[str] = []
    if len(paths) == 1:
        state, dropped = official_state_dict(read_state_dict(paths[0]))
        load_state_dict_strict(model, state, dtype=dtype, file=paths[0])
        return dropped
    combined: dict[str, torch.Tensor] = {}
    one_branch = expected_keys(model.config)  # builds a meta network: once, not per file
    for n, path in enumerate(paths):
        state, skipped = official_state_dict(read_state_dict(path))
        dropped += skipped
        report = mismatch_report(one_branch, state)
        if report:
            raise CosmosError(
                f"checkpoint does not match one control branch of the network: {report}", file=path
            )
        if n == 0:
            combined.update({k: v for k, v in state.items() if not k.startswith("control_")})
        combined.update(_branch_keys(state, n))
    load_state_dict_strict(model, combined, dtype=dtype)
    return dropped


def convert_checkpoint(
    src: str | Path, dst: str | Path, config: object, *, dtype: torch.dtype | None = torch.bfloat16
) -> Path:
    """Check an official checkpoint against `config`'s network and write its weights as .safetensors
    (official key names, non-weights dropped), atomically."""
    src, dst = Path(src), Path(dst)
    state, _ = official_state_dict(read_state_dict(src))
    branches = len(
        {k.split(".")[1] for k in state if k.startswith("control_embedder.") and k.split(".")[1].isdigit()}
    )
    report = mismatch_report(expected_keys(config, max(branches, 1)), state)
    if report:
        raise CosmosError(f"checkpoint does not match the network: {report}", file=src)
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        value = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        # safetensors refuses tensors that share storage (tied or sliced weights): give each its own.
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone() if ptr in seen else value.contiguous()
        seen.add(ptr)
    return stable_safetensors.save_file(
        out, dst, metadata={"format": "pt", "source": src.name, "producer": "cosmos-t2"}
    )
