"""Built models kept for the next job of the same process (`cosmos-t2 infer` with several jobs).

A network is keyed by everything that determines it: the checkpoint files (path, size, mtime) in branch
order, tiny or not, device, dtype and how it is accelerated (compiled networks are compiled once, here).
The VAE by its file, tiny, device and dtype. The text encoder is kept only where it costs no accelerator
memory beside the DiT (the tiny encoder, or a CPU run); the 7B encoder on a GPU is built per job as a single
job does, and the embedding cache on disk answers repeated prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.text import PromptEncoder, encoder_for
from cosmos_t2.model.vae import WanVAE
from cosmos_t2.pipeline.acceleration import Acceleration, accelerate
from cosmos_t2.pipeline.memory import Plan
from cosmos_t2.pipeline.models import ModelFiles, build_net, build_tokenizer
from cosmos_t2.pipeline.residency import build_device, offload_key, place_net, place_vae, set_net_levers


def _file_key(path: Path | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    stat = Path(path).stat()
    return (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass
class ModelPool:
    """Networks, VAEs and (where cheap to keep) text encoders built so far; `builds` counts what was built."""

    nets: dict[tuple[Any, ...], tuple[TransferNet, bool]] = field(default_factory=dict)
    vaes: dict[tuple[Any, ...], WanVAE] = field(default_factory=dict)
    encoders: dict[tuple[Any, ...], PromptEncoder] = field(default_factory=dict)
    builds: dict[str, int] = field(default_factory=lambda: {"net": 0, "vae": 0, "text_encoder": 0})
    offload: dict[int, Any] = field(default_factory=dict)  # id(model) -> its offload handle (residency)

    def net(
        self,
        files: ModelFiles,
        modalities: list[str],
        *,
        tiny: bool,
        device: torch.device,
        dtype: torch.dtype,
        acceleration: Acceleration,
        plan: Plan | None = None,
    ) -> tuple[TransferNet, bool]:
        """(network, distilled) for these checkpoints, built, laid out for `plan` (None: resident) and
        accelerated on first use."""
        plan = plan or Plan("none")
        checkpoints = tuple((m, _file_key(files.checkpoints.get(m))) for m in modalities)
        key = (checkpoints, len(modalities), files.distilled, tiny, str(device), dtype, acceleration.compile,
               acceleration.compile_mode, acceleration.attn_backend, offload_key(plan))  # fmt: skip
        if key not in self.nets:
            net, distilled = build_net(
                files, modalities, tiny=tiny, device=build_device(plan, device), dtype=dtype
            )
            set_net_levers(net, plan)  # before compiling: the compiled blocks keep them
            net = accelerate(net, acceleration)
            handle = place_net(net, plan, device)
            if handle is not None:
                self.offload[id(net)] = handle
            self.nets[key] = (net, distilled)
            self.builds["net"] += 1
        return self.nets[key]

    def vae(
        self,
        files: ModelFiles,
        *,
        tiny: bool,
        device: torch.device,
        dtype: torch.dtype,
        plan: Plan | None = None,
    ) -> WanVAE:
        plan = plan or Plan("none")
        key = (_file_key(files.vae), tiny, str(device), dtype, plan.offload == "none")
        if key not in self.vaes:
            vae = build_tokenizer(files, tiny=tiny, device=build_device(plan, device), dtype=dtype,
                                  channels_last=device.type == "cuda")  # fmt: skip
            handle = place_vae(vae, plan, device)
            if handle is not None:
                self.offload[id(vae)] = handle
            self.vaes[key] = vae
            self.builds["vae"] += 1
        return self.vaes[key]

    def text_encoder(self, files: ModelFiles, device: torch.device) -> PromptEncoder:
        """The prompt encoder of `files` (the tiny one when it has none)."""
        tiny = files.text_encoder is None
        key = (None if tiny else str(Path(files.text_encoder).resolve()), str(device))  # type: ignore[arg-type]
        if key in self.encoders:
            return self.encoders[key]
        encoder = encoder_for(tiny=tiny, text_encoder_dir=files.text_encoder, device=str(device))
        self.builds["text_encoder"] += 1
        if tiny or device.type == "cpu":
            self.encoders[key] = encoder
        return encoder
