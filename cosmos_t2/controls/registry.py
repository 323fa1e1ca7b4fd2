"""One entry per control modality: every fact the rest of the package needs about it, in one place.

The spec validator, the controls stage, the control-video reader, the checkpoint finder, the sweep planner
and the report all read `MODALITIES` when they run (not at import), so a new modality is one entry here
plus one compute module. The table's order is upstream's (edge, vis, depth, seg): specs list controls in
it, and the model's control branches follow it.

This module imports no numpy, torch or cv2: `cosmos_t2.jobspec.job` reads it, and the Snakemake workflow and
`cosmos-t2 validate` import that without wanting the heavy stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cosmos_t2.controls.models import ModelPaths

PRESETS = ("very_low", "low", "medium", "high", "very_high")
SEG_PROMPT_WORDS = 128  # upstream's default seg control_prompt: the prompt's first 128 words


@dataclass(frozen=True)
class SpecKey:
    """One key a modality adds to its control block: a preset (`choices`, `default`) or a text.

    A text key names something (`describes`, shown when it is blank) and, with `prompt_words`, defaults
    to the prompt's first that many words when the control is computed (no `control_path`).
    """

    name: str
    choices: tuple[str, ...] | None = None
    default: str | None = None
    describes: str | None = None
    prompt_words: int | None = None

    @property
    def is_preset(self) -> bool:
        return self.choices is not None


@dataclass(frozen=True)
class Modality:
    """A control modality.

    `model_fields` are the `ModelPaths` fields its computation reads: they enter its sweep cache key (with
    its spec keys), and its fidelity metric is scored only when all of them are given. `metric` is the
    report column of that score, computed by the compute module's `score(rendered, control)`.
    `interpolation` names the OpenCV filter (`cosmos_t2.video.INTERPOLATIONS`) a given control video is
    resized with, as upstream's `read_and_process_control_input` does.
    """

    name: str
    compute_module: str  # exposes compute(frames, params, models, device) -> (video, info)
    interpolation: str
    spec_keys: tuple[SpecKey, ...] = ()
    model_fields: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()  # official checkpoint UUIDs (their Hugging Face file names)
    distilled_checkpoints: tuple[str, ...] = ()  # such a model runs only with this control alone
    metric: str | None = None
    transfers_style: bool = False  # upstream refuses it together with a style image (image_context_path)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(key.name for key in self.spec_keys)

    def compute(
        self, frames: np.ndarray, params: Mapping[str, Any], models: ModelPaths, device: torch.device
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The control video of (T, H, W, 3) uint8 frames, and what produced it."""
        return self._module().compute(frames, params, models, device)

    def score(self, rendered: np.ndarray, control: np.ndarray) -> float:
        """Fidelity of `rendered` (the output put through `compute`) to the control video."""
        return float(self._module().score(rendered, control))

    def _module(self) -> ModuleType:
        # Imported on use: the compute modules pull in torch and cv2, which spec validation must not.
        return importlib.import_module(self.compute_module)


MODALITIES: dict[str, Modality] = {
    "edge": Modality(
        name="edge",
        compute_module="cosmos_t2.controls.edge",
        interpolation="linear",
        spec_keys=(SpecKey("preset_edge_threshold", choices=PRESETS, default="medium"),),
        checkpoints=("61f5694b-0ad5-4ecd-8ad7-c8545627d125",),
        distilled_checkpoints=("41f07f13-f2e4-4e34-ba4c-86f595acbc20",),
        metric="edge_f1",
    ),
    "vis": Modality(
        name="vis",
        compute_module="cosmos_t2.controls.blur",
        interpolation="area",
        spec_keys=(SpecKey("preset_blur_strength", choices=PRESETS, default="medium"),),
        checkpoints=("ba2f44f2-c726-4fe7-949f-597069d9b91c",),
        metric="blur_ssim",
        transfers_style=True,
    ),
    "depth": Modality(
        name="depth",
        compute_module="cosmos_t2.controls.depth",
        interpolation="linear",
        model_fields=("depth_model_dir",),
        checkpoints=("626e6618-bfcd-4d9a-a077-1409e2ce353f",),
        metric="depth_si_rmse",
    ),
    # No metric: scoring seg would run GroundingDINO and SAM2 on every output.
    "seg": Modality(
        name="seg",
        compute_module="cosmos_t2.controls.seg",
        interpolation="nearest",  # keeps segmentation colours flat
        spec_keys=(
            SpecKey("control_prompt", describes="the objects to segment", prompt_words=SEG_PROMPT_WORDS),
        ),
        model_fields=("seg_model_dir", "grounding_model_dir"),
        checkpoints=("5136ef49-6d8d-42e8-8abf-7dac722a304a",),
    ),
}
