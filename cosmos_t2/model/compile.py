"""torch.compile of the network's blocks, static shapes.

Compiling block by block (not the whole forward) keeps compile time bounded (every backbone block has the same
graph, so dynamo reuses it) and leaves the Python-level control flow (hint injection, context-parallel hooks)
eager. The compiled function replaces the instance's `forward`, so module types, state-dict keys and the
control blocks' `forward_control` (which calls `self.forward`) all stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from cosmos_t2.model.dit import Block


def compile_blocks(net: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile every DiT block of `net` in place (backbone and control branches); returns `net`."""
    for module in net.modules():
        if isinstance(module, Block) and not hasattr(module, "_compiled_forward"):
            module._compiled_forward = True
            module.forward = torch.compile(module.forward, mode=mode, dynamic=False)
    return net
