"""Weights that rest in host memory and visit the accelerator: whole models between stages, or block by block.

Both swap each parameter's storage in place (`param.data = tensor`): the module objects, their parameter
objects, state-dict keys and the compiled block forwards (`model.compile.compile_blocks`) all stay as they
are. Dynamo passes parameters to a compiled block as graph inputs and guards on their device, dtype, shape
and strides, never on their address, so a block whose weights arrive in a fresh GPU buffer every step runs
the same compiled graph (no recompilation) and the same kernels: the output is the resident run's, bit for bit.

- `ModelSwap`: the whole module is copied in before its stage and dropped after (`runtime.residency`: text
  encoder, VAE, network each on the GPU only for their own stages). Dropping costs nothing: the host copy
  never changed, so the GPU copy is simply released.
- `BlockStreamer`: the DiT's and every control branch's blocks rest in host memory; two GPU slots at most are
  in use. When block i starts, block i+1's copy is issued on a side CUDA stream, so PCIe moves it while block
  i computes (one 720p block computes for ~100 ms a step; its 165 MB move in ~7 ms from pinned memory). The
  compute stream waits on an event for the copy before the block runs, and each fetched tensor is recorded on
  the compute stream so the caching allocator cannot hand its memory to the next copy before the block is
  done with it. The order is the network's own: control branches first (as `TransferNet.forward` runs them),
  then the backbone, then around again for the next step; a block asked for out of order is fetched at once.
  We chose per-block buffers from the caching allocator over two fixed slots: the allocator reuses the two
  freed blocks' memory (all blocks of a kind have one size), and nothing has to know a block's layout.

Host copies are pinned on CUDA (asynchronous copies need it). On CPU the "device" is the CPU too: the host
copy is a separate tensor and every visit copies it into a fresh one, so tests run this very code path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from cosmos_t2.model.control import ControlBlock, TransferNet
from cosmos_t2.model.dit import Block, FeedForward


def _host_copy(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    # empty_like keeps the memory format (the VAE's channels-last convolution weights stay channels-last)
    return torch.empty_like(tensor, device="cpu", pin_memory=pin).copy_(tensor.detach())


class HostWeights:
    """One module's parameters kept in host memory; they rest there (`param.data` is the host copy)."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.device = device
        self.params = [p for p in module.parameters()] + [b for b in module.buffers()]
        pin = device.type == "cuda"
        with torch.inference_mode(False), torch.no_grad():
            self.host = [_host_copy(p, pin) for p in self.params]
        self.release()

    @property
    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.host)

    def fetch(self, stream: Any = None) -> list[torch.Tensor]:
        """Device copies of every host tensor, issued on `stream` (None: the current stream)."""
        # Plain tensors even under inference mode: they become parameters' storage, reused by any later mode.
        with torch.inference_mode(False), torch.no_grad():
            if self.device.type != "cuda":
                return [h.clone() for h in self.host]
            with torch.cuda.stream(stream) if stream is not None else _nothing():
                return [h.to(self.device, non_blocking=True) for h in self.host]

    def install(self, tensors: Sequence[torch.Tensor]) -> None:
        with torch.inference_mode(False), torch.no_grad():
            for p, t in zip(self.params, tensors, strict=True):
                p.data = t

    def release(self) -> None:
        """Back to the host copies; the device tensors go back to the allocator."""
        with torch.inference_mode(False), torch.no_grad():
            for p, h in zip(self.params, self.host, strict=True):
                p.data = h


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class ModelSwap:
    """A whole module that visits the device: `load()` before its stage, `evict()` after."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module
        self.weights = HostWeights(module, device)
        self.loaded = False
        self.loads = 0  # how many times it was copied in (the sidecar records it)

    def load(self) -> None:
        if not self.loaded:
            self.weights.install(self.weights.fetch())
            self.loaded, self.loads = True, self.loads + 1

    def evict(self) -> None:
        if self.loaded:
            self.weights.release()
            self.loaded = False


def streamed_blocks(net: TransferNet) -> list[Block]:
    """The blocks in the order one forward runs them: every control branch's, then the backbone's."""
    order: list[Block] = []
    for n in range(net.num_control_branches):
        order.extend(net.control_branch(n)[1])  # type: ignore[arg-type]
    order.extend(net.blocks)  # type: ignore[arg-type]
    return order


class BlockStreamer:
    """Stream `net`'s blocks from host memory, prefetching the next one on a side stream (see the module
    docstring). Everything else of the network (embedders, projections, final layer) moves to `device`."""

    def __init__(self, net: TransferNet, device: torch.device) -> None:
        self.device = device
        self.blocks = streamed_blocks(net)
        self.weights = [HostWeights(b, device) for b in self.blocks]
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: dict[int, tuple[list[torch.Tensor], Any]] = {}
        self.fetches = 0  # block copies issued (the sidecar records them)
        self.misses = 0  # blocks that were not prefetched and had to be fetched on the spot
        in_blocks = {id(p) for w in self.weights for p in w.params}
        with torch.inference_mode(False), torch.no_grad():
            for p in [*net.parameters(), *net.buffers()]:
                if id(p) not in in_blocks:
                    p.data = p.data.to(device)
        for i, block in enumerate(self.blocks):
            if isinstance(block, ControlBlock):
                # forward_control calls self.forward directly (no module hooks): wrap the entry point itself
                block.forward_control = self._wrapped(i, block.forward_control)  # type: ignore[method-assign]
            else:
                block.register_forward_pre_hook(lambda _m, _a, i=i: self.enter(i))
                block.register_forward_hook(lambda _m, _a, _o, i=i: self.exit(i))

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.weights)

    def _wrapped(self, i: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.enter(i)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit(i)

        return run

    def _issue(self, i: int) -> None:
        if i in self._pending:
            return
        tensors = self.weights[i].fetch(self.stream)
        event = None
        if self.stream is not None:
            event = torch.cuda.Event()
            event.record(self.stream)
        self._pending[i] = (tensors, event)
        self.fetches += 1

    def enter(self, i: int) -> None:
        """Block i is about to run: its weights in place (waiting for the copy), block i+1's copy issued."""
        if i not in self._pending:
            self.misses += 1
            self._issue(i)
        tensors, event = self._pending.pop(i)
        if event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            for t in tensors:  # freed only once the compute stream is past this block
                t.record_stream(compute)
        self.weights[i].install(tensors)
        self._issue((i + 1) % len(self.blocks))

    def exit(self, i: int) -> None:
        self.weights[i].release()


def set_mlp_chunks(net: nn.Module, chunks: int | None) -> None:
    """Run every block's MLP over `chunks` slices of the tokens (None: all at once); set before compiling."""
    for module in net.modules():
        if isinstance(module, FeedForward):
            module.chunks = chunks
