"""One control block of a spec, validated against its modality's registry entry.

The keys every block has are here; the keys a modality adds (`SpecKey`s: a preset with its default, or a
text that may default to the prompt's first words) come from `cosmos_t2.controls.registry`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.controls.registry import MODALITIES, Modality, SpecKey
from cosmos_t2.jobspec.fields import Fields, Source, show

_CONTROL_KEYS = ("control_path", "control_weight", "mask_path", "mask_prompt")


@dataclass(frozen=True, init=False)
class ControlSpec:
    """One control block (a modality of `cosmos_t2.controls.registry.MODALITIES`).

    `control_path` None means the control is computed from the input video. `control_weight` is kept
    as given; see `normalized_control_weights` for how several weights combine. With both `mask_path`
    and `mask_prompt`, upstream uses `mask_path` (and warns); so do we.

    `params` holds the modality's own keys (its registry `spec_keys`, e.g. `preset_edge_threshold`); they
    are given as keyword arguments and read as attributes. Keys that belong to another modality read as
    None (e.g. `preset_blur_strength` on edge).
    """

    modality: str
    control_path: Path | None
    control_weight: float
    mask_path: Path | None
    mask_prompt: str | None
    params: tuple[tuple[str, Any], ...]  # (key, value), sorted: a tuple keeps the block hashable

    def __init__(
        self,
        modality: str,
        control_path: Path | None = None,
        control_weight: float = 1.0,
        mask_path: Path | None = None,
        mask_prompt: str | None = None,
        params: Iterable[tuple[str, Any]] = (),
        **keys: Any,
    ) -> None:
        # Hand-written so a modality's keys are plain keyword arguments (`dataclasses.replace` passes
        # `params` back in, hence both).
        values = {
            "modality": modality,
            "control_path": control_path,
            "control_weight": control_weight,
            "mask_path": mask_path,
            "mask_prompt": mask_prompt,
            "params": tuple(sorted({**dict(params), **keys}.items())),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a modality key, or None for another modality's key.
        if name.startswith("_"):
            raise AttributeError(name)
        params = dict(self.__dict__.get("params", ()))
        if name in params:
            return params[name]
        if any(name in m.key_names for m in MODALITIES.values()):
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        keys = _CONTROL_KEYS + MODALITIES[self.modality].key_names
        return {key: jsonable(getattr(self, key)) for key in keys}


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _modality_key(f: Fields, key: SpecKey, control_path: Path | None, prompt: str) -> Any:
    if key.is_preset:
        return f.choice(key.name, key.choices, key.default)
    value = f.text(key.name, key.default, nonblank=key.describes)
    if value is None and control_path is None and key.prompt_words is not None:
        value = " ".join(prompt.split()[: key.prompt_words])  # upstream fills it only when computed
    return value


def control_block(src: Source, modality: Modality, block: Any, prompt: str) -> ControlSpec:
    if not isinstance(block, dict):
        raise src.error(
            modality.name, f"expected an object (a control block; {{}} for defaults), got {show(block)}"
        )
    f = Fields(src, block, prefix=f"{modality.name}.")
    f.check_keys(_CONTROL_KEYS + modality.key_names)
    control_path = f.path("control_path")
    keys = {key.name: _modality_key(f, key, control_path, prompt) for key in modality.spec_keys}
    return ControlSpec(
        modality=modality.name,
        control_path=control_path,
        control_weight=f.number("control_weight", 1.0, 0.0, 1.0),
        mask_path=f.path("mask_path"),
        mask_prompt=f.text("mask_prompt", nonblank="the objects the control applies to"),
        **keys,
    )
