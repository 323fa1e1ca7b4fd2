"""What `cosmos-t2 encode-prompt` runs once its options are parsed, in its own process or on a server.

`PromptArgs` is the parsed command line; `run_encode_prompt` writes the job's prompt embeddings through the
embedding cache (`model.text.write_prompt_embeddings`) and reports the file as a `JobEvent`. A server keeps
its encoders in `PromptEncoders` for the next request: the tiny one as built, a folder's 7B model once a
prompt missed the cache (on a hit nothing is loaded, as in a process of its own). The 7B model on a GPU
makes room among the pool's models before it loads, and gives way to the server's next diffuse or render
request, whose memory plan does not count it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmos_t2.destination import check_output_file
from cosmos_t2.job.progress import EventSink, JobEvent

if TYPE_CHECKING:
    from torch import Tensor

    from cosmos_t2.model.text import TextEncoder
    from cosmos_t2.runtime.pool import ModelPool


@dataclass
class PromptArgs:
    """`cosmos-t2 encode-prompt`'s arguments as parsed (paths as given: relative to the caller's folder)."""

    job: Path
    out: Path
    tiny: bool = False
    text_encoder_dir: Path | None = None
    name: str | None = None
    cache_dir: Path | None = None  # None: the default cache
    no_cache: bool = False
    device: str | None = None  # None: CUDA when present

    def resolved(self, cwd: Path) -> PromptArgs:
        """These arguments with every path absolute in `cwd` (what a client sends its server)."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else cwd / path.expanduser()

        return dataclasses.replace(self, job=cwd / self.job.expanduser(), out=cwd / self.out.expanduser(),
                                   text_encoder_dir=absolute(self.text_encoder_dir),
                                   cache_dir=absolute(self.cache_dir))  # fmt: skip


def run_encode_prompt(args: PromptArgs, *, events: EventSink, encoders: PromptEncoders | None = None) -> None:
    """Write `args`' embeddings file (its error is raised); `encoders`: the server's (None: this run's own,
    loaded only for a prompt the cache misses)."""
    from cosmos_t2.jobspec.load import load_job  # here: torch loads where it runs
    from cosmos_t2.model.text import (  # here: torch loads where it runs
        EmbeddingCache,
        default_cache_dir,
        write_prompt_embeddings,
    )
    from cosmos_t2.model.text_folder import deferred_encoder_for  # here: torch loads where it runs

    spec = load_job(args.job, name=args.name)
    check_output_file(args.out)
    if encoders is None:
        encoder = deferred_encoder_for(
            tiny=args.tiny, text_encoder_dir=args.text_encoder_dir, device=args.device
        )
    else:
        encoder = encoders.get(tiny=args.tiny, text_encoder_dir=args.text_encoder_dir, device=args.device)
    cache = None if args.no_cache else EmbeddingCache(args.cache_dir or default_cache_dir())
    meta = write_prompt_embeddings(args.out, encoder, spec.prompt, spec.negative_prompt, cache)
    shown = f"{args.out} ({meta['encoder_label']}, {meta['max_length']} tokens x {meta['dim']} channels)"
    events(JobEvent("message", shown))


class RoomFirst:
    """A server's encoder: before its first prompt is encoded (a folder's model loads then) the pool
    makes room for it on the GPU and counts the build."""

    def __init__(self, inner: TextEncoder, before_load: Callable[[], None] | None) -> None:
        self.inner = inner
        self.identity, self.label = inner.identity, inner.label
        self.max_length, self.dim = inner.max_length, inner.dim
        self._before_load = before_load

    def encode(self, prompts: Sequence[str]) -> Tensor:
        if self._before_load is not None:
            self._before_load()
            self._before_load = None
        return self.inner.encode(prompts)


@dataclass
class PromptEncoders:
    """The server's text encoders by (tiny, folder, device), kept between `encode-prompt` requests."""

    pool: ModelPool
    kept: dict[tuple[Any, ...], RoomFirst] = field(default_factory=dict)

    def get(self, *, tiny: bool, text_encoder_dir: Path | None, device: str | None) -> RoomFirst:
        from cosmos_t2.model.text import encoder_placement  # here: torch loads where it runs
        from cosmos_t2.model.text_folder import deferred_encoder_for  # here: torch loads where it runs

        folder = None if tiny or text_encoder_dir is None else str(Path(text_encoder_dir).resolve())
        placed = encoder_placement(device)[0]
        key = (tiny, folder, placed)
        if key not in self.kept:
            inner = deferred_encoder_for(tiny=tiny, text_encoder_dir=text_encoder_dir, device=placed)
            built_now = folder is None  # the tiny encoder is built at once, a folder's on its first miss
            if built_now:
                self.pool.builds["text_encoder"] += 1
            self.kept[key] = RoomFirst(inner, None if built_now else lambda: self._make_room(placed))
        return self.kept[key]

    def _make_room(self, device: str) -> None:
        """Before a folder's model loads: the pool's models give way where the GPU lacks room for it."""
        import torch

        from cosmos_t2.runtime.memory import (  # here: torch loads where it runs
            TEXT_ENCODER_PARAMS,
            TEXT_HIDDEN_BYTES,
        )
        from cosmos_t2.runtime.memory_choice import device_budget  # here: torch loads where it runs

        self.pool.builds["text_encoder"] += 1
        if device.startswith("cuda"):
            need = 2 * TEXT_ENCODER_PARAMS + TEXT_HIDDEN_BYTES  # bf16 weights, the hidden states
            self.pool.make_room([], need, device_budget(torch.device(device)))

    def release_gpu(self) -> int:
        """Drop the encoders on a GPU (before another stage's request, whose plan does not count them); the
        number dropped."""
        on_gpu = [key for key in self.kept if str(key[2]).startswith("cuda")]
        for key in on_gpu:
            del self.kept[key]
        return len(on_gpu)
