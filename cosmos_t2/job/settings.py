"""What a job runs after its mode's adjustments: tiny mode's size and chunk length, the distilled model's
step count. The spec says what the user asked for; these settings are what runs, with what they changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cosmos_t2.jobspec.job import Spec
from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS

TINY_FRAMES_PER_CHUNK = 17
OFFICIAL_FRAMES_PER_CHUNK = 93


@dataclass(frozen=True)
class Settings:
    """What the run does after tiny-mode and distilled-model adjustments."""

    spec: Spec  # the effective spec
    changed: dict[str, Any]  # key -> value as given, for keys the mode changed
    tiny: bool


def effective_spec(spec: Spec, tiny: bool) -> Settings:
    changed: dict[str, Any] = {}
    if tiny:
        updates: dict[str, Any] = {"resolution": "tiny"}
        if spec.num_video_frames_per_chunk == OFFICIAL_FRAMES_PER_CHUNK:
            updates["num_video_frames_per_chunk"] = TINY_FRAMES_PER_CHUNK
        changed = {k: getattr(spec, k) for k, v in updates.items() if getattr(spec, k) != v}
        spec = dataclasses.replace(spec, **updates)
    # The chunk rules (1 + 4k frames, more than the conditional frames) are the spec's
    # (`jobspec.job._chunk_frames`); tiny mode's 17 keeps them.
    return Settings(spec=spec, changed=changed, tiny=tiny)


def distilled_settings(settings: Settings) -> Settings:
    """The distilled model runs 4 steps unless the spec asks for a count (even the full model's 35), and
    no guidance."""
    spec = settings.spec
    changed = dict(settings.changed)
    if not spec.num_steps_given:  # the spec default: the distilled model's own count instead
        changed["num_steps"] = spec.num_steps
        spec = dataclasses.replace(spec, num_steps=DISTILLED_NUM_STEPS)
    return dataclasses.replace(settings, spec=spec, changed=changed)
