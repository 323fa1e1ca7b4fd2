"""A toy control modality for tests/controls/test_modality_registry.py: its registry entry's compute module.

"normal" quantises the frames to a preset's number of grey levels: trivial, deterministic, no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cosmos_t2.controls.registry import PRESETS, Modality, SpecKey

STEPS = {"very_low": 8, "low": 16, "medium": 32, "high": 64, "very_high": 128}

NORMAL = Modality(
    name="normal",
    compute_module="_toy_modality",
    interpolation="linear",
    spec_keys=(SpecKey("preset_normal_strength", choices=PRESETS, default="medium"),),
    metric="normal_agreement",
)


def compute(
    frames: np.ndarray, params: Mapping[str, Any], _: Any, __: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    preset = params.get("preset_normal_strength") or "medium"
    step = STEPS[preset]
    return (frames // step * step).astype(np.uint8), {"preset_normal_strength": preset, "step": step}


def score(rendered: np.ndarray, control: np.ndarray) -> float:
    """Share of pixels where the output's control equals the given one."""
    return float(np.mean(rendered == control))
