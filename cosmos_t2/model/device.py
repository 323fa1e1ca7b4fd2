"""The device a command runs on, decided once at the edge and checked before any work."""

from __future__ import annotations

import torch

from cosmos_t2.errors import CosmosError

DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or "auto": CUDA when present, else the CPU. Otherwise "cpu", "cuda" or "cuda:N", present here."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CosmosError(
                f"device {str(device)!r} asked for but no CUDA device is visible", key="--device"
            )
        if resolved.index is not None and resolved.index >= count:
            raise CosmosError(
                f"device {str(device)!r} asked for but only {count} CUDA device(s) are visible",
                key="--device",
            )
    return resolved


def parse_device(device: str | torch.device) -> torch.device:
    """ "cpu", "cuda" or "cuda:N" as a torch.device, whether or not it is present here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise CosmosError(f"unknown device {str(device)!r}; expected cpu, cuda or cuda:N", key="--device")
    return parsed


def cuda_index(device: torch.device) -> int:
    """The GPU a `cuda` device means. torch's `set_device` and per-process memory-fraction calls want the index
    (a bare "cuda" is refused there); a bare one means the current device."""
    return device.index if device.index is not None else torch.cuda.current_device()
