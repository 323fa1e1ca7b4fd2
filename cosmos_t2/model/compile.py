"""torch.compile of the network's blocks, static shapes, and the on-disk cache that makes it a one-time cost.

Compiling block by block (not the whole forward) keeps compile time bounded (every backbone block has the same
graph, so dynamo reuses it) and leaves the Python-level control flow (hint injection, context-parallel hooks)
eager. The compiled function replaces the instance's `forward`, so module types, state-dict keys and the
control blocks' `forward_control` (which calls `self.forward`) all stay as they are.

Inductor's FX graph cache and AOT autograd cache (both on by default since torch 2.5/2.7, both in torch 2.11
and 2.13) keep compiled kernels in `TORCHINDUCTOR_CACHE_DIR` (Triton's under it). By default that folder is
/tmp/torchinductor_$USER: per machine, and gone with a SLURM node's /tmp. `enable_compile_cache` points it at
a folder jobs share, so only the first process of a sweep pays for kernel compilation; dynamo's tracing (a few
seconds) is still paid once per process. FlashAttention-4's CuTe DSL kernels are compiled outside inductor, in
each process (7 s of the first step at 720p on an H200) unless its own persistent cache is on: the same call
turns it on, in a subfolder, before `flash_attn.cute` is first imported (it reads the setting on import).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cosmos_t2.model.attention import mark_trace_constants
from cosmos_t2.model.dit import Block

COMPILE_CACHE_SUBDIR = "torch-compile"
FA4_CACHE_ENV = "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"
FA4_CACHE_DIR_ENV = "FLASH_ATTENTION_CUTE_DSL_CACHE_DIR"
FA4_CACHE_SUBDIR = "flash-attn-cute"


def compile_blocks(net: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile every DiT block of `net` in place (backbone and control branches); returns `net`."""
    mark_trace_constants()
    for module in net.modules():
        if isinstance(module, Block) and not hasattr(module, "_compiled_forward"):
            module._compiled_forward = True
            module.forward = torch.compile(module.forward, mode=mode, dynamic=False)
    return net


def default_compile_cache_dir() -> Path:
    """$COSMOS_T2_CACHE_DIR/torch-compile, else ~/.cache/cosmos-t2/torch-compile (beside the text-embedding
    cache, `model.text.default_cache_dir`)."""
    root = os.environ.get("COSMOS_T2_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "cosmos-t2"
    return base / COMPILE_CACHE_SUBDIR


def enable_compile_cache(folder: Path) -> Path:
    """Keep inductor's compiled graphs and kernels (Triton's too, FA4's in a subfolder) in `folder` (created) for
    later processes.

    Must run before the first compilation in the process: inductor reads the folder from the environment each
    time it looks for or writes a cache entry. It overrides TORCHINDUCTOR_CACHE_DIR (importing the model code
    already sets that to torch's /tmp default, so a user's value can't be told apart here); callers that
    want torch's own choice don't call this (`infer --no-compile-cache`)."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    chosen = Path(folder).resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(chosen)
    # FA4 keys its entries by a hash of its own sources and versions; a user's "0" keeps it off
    os.environ.setdefault(FA4_CACHE_ENV, "1")
    os.environ[FA4_CACHE_DIR_ENV] = str(chosen / FA4_CACHE_SUBDIR)
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return chosen
