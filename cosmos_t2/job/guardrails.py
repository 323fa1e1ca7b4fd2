"""Optional content-safety guardrails (`infer --guardrails`, `render --guardrails`): NVIDIA's checker.

Upstream's inference (`cosmos_transfer2/inference.py`) runs a text guardrail on the prompt and the
negative prompt before generating, and a video guardrail on the generated frames before saving them
(unsafe content blocks the output; faces are blurred). The same checks ship as the `cosmos-guardrail`
package (`pip install cosmos-guardrail`), which diffusers' Cosmos pipelines call through
`CosmosSafetyChecker`: `check_text_safety(text) -> bool` and `check_video_safety(frames) -> frames or None`,
frames being (T, H, W, 3) uint8. Its weights come from the Hugging Face Hub on first use.

Here: a blocked prompt stops the job before any model is built; a blocked video is not written. The
check runs on the generated frames alone (not on the control / input panels beside them), and the
frames it returns (faces blurred) are what gets written.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import Chunk, stitch
from cosmos_t2.jobspec.job import Spec

PACKAGE = "cosmos_guardrail"  # the import name of the cosmos-guardrail distribution
INSTALL_HINT = "pip install cosmos-guardrail"


@dataclass
class Guardrails:
    """A loaded checker and what it decided (recorded in the sidecar)."""

    checker: Any  # cosmos_guardrail.CosmosSafetyChecker
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    version: str | None = None
    checked: list[str] = field(default_factory=list)

    @contextmanager
    def _on_device(self) -> Iterator[None]:
        """The checker's models sit on the CPU between checks, so they never share the GPU with the
        DiT (as diffusers' pipelines move them)."""
        move = hasattr(self.checker, "to") and self.device.type != "cpu"
        if move:
            self.checker.to(self.device)
        try:
            yield
        finally:
            if move:
                self.checker.to(torch.device("cpu"))

    def check_prompts(self, spec: Spec) -> None:
        """Raise a CosmosError if the prompt or the negative prompt is refused (as upstream: both)."""
        texts = {key: getattr(spec, key) for key in ("prompt", "negative_prompt")}
        with self._on_device():
            safe = {
                key: not text or bool(self.checker.check_text_safety(text)) for key, text in texts.items()
            }
        for key in texts:
            if not safe[key]:
                raise CosmosError(
                    f"the guardrail blocked the {key.replace('_', ' ')} of {spec.name!r}; nothing was generated",
                    file=spec.prompt_path if key == "prompt" else None,
                    key=key,
                )
            self.checked.append(key)

    def check_video(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> the frames to write (faces blurred); a CosmosError if refused."""
        with self._on_device():
            checked = self.checker.check_video_safety(frames)
        if checked is None:
            raise CosmosError("the guardrail blocked the generated video; it was not written", key="video")
        checked = np.asarray(checked)
        if checked.shape != frames.shape or checked.dtype != np.uint8:
            raise CosmosError(
                f"the guardrail returned frames of shape {checked.shape} {checked.dtype}; expected "
                f"{frames.shape} uint8 (is {PACKAGE} too old or too new?)"
            )
        self.checked.append("video")
        return checked

    def record(self) -> dict[str, Any]:
        return {"package": PACKAGE, "version": self.version, "passed": list(self.checked)}


def load_guardrails(device: str | torch.device = "cpu") -> Guardrails:
    """NVIDIA's checker, or one clear error when the package is not installed."""
    try:
        module = importlib.import_module(PACKAGE)
    except ImportError as exc:
        raise CosmosError(
            f"--guardrails needs NVIDIA's cosmos-guardrail package, which is not installed ({INSTALL_HINT})",
            key="guardrails",
        ) from exc
    try:
        checker = module.CosmosSafetyChecker()
    except Exception as exc:  # its weights come from the Hub: a network or licence error lands here
        raise CosmosError(f"cannot load the cosmos-guardrail checker: {exc}", key="guardrails") from exc
    return Guardrails(checker, torch.device(device), version=getattr(module, "__version__", None))


def guard_panels(
    guard: Guardrails, panels: list[torch.Tensor], chunks: list[Chunk], num_frames: int, width: int
) -> list[torch.Tensor]:
    """Check the generated video (each chunk panel's last `width` columns, stitched) and put the frames
    the checker returns back into every chunk position they came from."""
    generated = stitch([p[:, :, -width:] for p in panels], chunks, num_frames, dim=0)
    checked = torch.from_numpy(guard.check_video(generated.numpy()))
    out = []
    for panel, chunk in zip(panels, chunks, strict=True):
        panel = panel.clone()
        index = [min(i, num_frames - 1) for i in chunk.frame_indices[: panel.shape[0]]]
        panel[:, :, -width:] = checked[index]
        out.append(panel)
    return out
