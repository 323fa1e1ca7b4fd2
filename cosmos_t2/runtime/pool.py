"""Built models kept for the next job of the same process (`cosmos-t2 infer` with several jobs).

A network is keyed by everything that determines it: the checkpoint files (path, size, mtime) in branch
order, tiny or not, device, dtype and how it is accelerated (compiled networks are compiled once, here).
The VAE by its file, tiny, device and dtype. The text encoder is kept only where it costs no accelerator
memory beside the DiT (the tiny encoder, or a CPU run); the 7B encoder on a GPU is built per job as a single
job does, and the embedding cache on disk answers repeated prompts.

A long-lived pool (a batch of mixed model sets, the `infer --server` process) would otherwise hold every
network it ever built on the GPU, while a job's memory plan counts this process's own memory as available to
it: `make_room` drops the least recently used models a job does not use until they and the job's estimated
peak fit its budget, so a pool never makes a job run out of memory that a process of its own would not.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.text import PromptEncoder, encoder_for
from cosmos_t2.model.vae import WanVAE
from cosmos_t2.runtime.acceleration import Acceleration, accelerate
from cosmos_t2.runtime.build import build_net, build_tokenizer
from cosmos_t2.runtime.memory import HEADROOM, Plan
from cosmos_t2.runtime.memory_choice import Budget
from cosmos_t2.runtime.residency import build_device, offload_key, place_net, place_vae, set_net_levers
from cosmos_t2.weights.locate import ModelFiles


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
    evictions: int = 0  # models dropped by make_room
    _last_use: dict[tuple[str, tuple[Any, ...]], int] = field(default_factory=dict)
    _clock: itertools.count = field(default_factory=itertools.count)

    @staticmethod
    def net_key(files: ModelFiles, modalities: list[str], *, tiny: bool, device: torch.device, dtype: torch.dtype,
                acceleration: Acceleration, plan: Plan | None = None) -> tuple[Any, ...]:  # fmt: skip
        """What determines a network: equal keys share one."""
        checkpoints = tuple((m, _file_key(files.checkpoints.get(m))) for m in modalities)
        return (checkpoints, len(modalities), files.distilled, tiny, str(device), dtype, acceleration.compile,
                acceleration.compile_mode, acceleration.attn_backend, offload_key(plan or Plan("none")))  # fmt: skip

    @staticmethod
    def vae_key(files: ModelFiles, *, tiny: bool, device: torch.device, dtype: torch.dtype,
                plan: Plan | None = None) -> tuple[Any, ...]:  # fmt: skip
        return (_file_key(files.vae), tiny, str(device), dtype, (plan or Plan("none")).offload == "none")

    def make_room(self, keep: list[tuple[str, tuple[Any, ...]]], need: int, budget: Budget) -> int:
        """Drop the least recently used pooled models outside `keep` (("net" | "vae", key) pairs) until the GPU
        memory they hold and `need` (the job's estimated peak, its own models included) fit `budget`; the
        number dropped. Only GPU memory counts: on CPU, or with no bound, nothing is dropped."""
        if budget.bytes is None:
            return 0
        held = {slot: _gpu_bytes(model) for slot, model in self._models() if slot not in keep}
        dropped = 0
        for slot in sorted(held, key=lambda s: self._last_use.get(s, -1)):
            if sum(held.values()) + need <= HEADROOM * budget.bytes:
                break
            if held.pop(slot) == 0:
                continue
            self._drop(slot)
            dropped += 1
        if dropped:
            gc.collect()
            torch.cuda.empty_cache()  # back to the driver, where the next process or stage sees it
        return dropped

    def _models(self) -> list[tuple[tuple[str, tuple[Any, ...]], Any]]:
        nets = [(("net", k), net) for k, (net, _) in self.nets.items()]
        return nets + [(("vae", k), vae) for k, vae in self.vaes.items()]

    def _drop(self, slot: tuple[str, tuple[Any, ...]]) -> None:
        kind, key = slot
        model = self.nets.pop(key)[0] if kind == "net" else self.vaes.pop(key)
        self.offload.pop(id(model), None)  # its hooks live on the model's own modules and go with it
        self._last_use.pop(slot, None)
        self.evictions += 1

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
        key = self.net_key(files, modalities, tiny=tiny, device=device, dtype=dtype, acceleration=acceleration,
                           plan=plan)  # fmt: skip
        self._last_use[("net", key)] = next(self._clock)
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
        key = self.vae_key(files, tiny=tiny, device=device, dtype=dtype, plan=plan)
        self._last_use[("vae", key)] = next(self._clock)
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


def _gpu_bytes(model: torch.nn.Module) -> int:
    """The bytes of `model`'s parameters and buffers that sit on a GPU (shared storage counted once)."""
    seen: dict[int, int] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_cuda:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
