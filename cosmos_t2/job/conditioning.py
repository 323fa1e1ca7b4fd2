"""The conditioning stages of a job: prompt embeddings and the style-reference tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model import text
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.image_context import load_image_encoder, tiny_image_encoder
from cosmos_t2.model.text import read_prompt_embeddings
from cosmos_t2.weights.locate import ModelFiles


def check_prompt_embeddings(path: Path, spec: Spec, tiny: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The file must hold this spec's prompts, encoded for this model size (checked before any model).
    Returns its (prompt, negative prompt), so the file is read once."""
    pos, neg, meta = read_prompt_embeddings(path)
    for key in ("prompt", "negative_prompt"):
        if key in meta and meta[key] != getattr(spec, key):
            raise CosmosError(
                f"the embeddings are of another {key.replace('_', ' ')} than the spec's", file=path, key=key
            )
    want = (TransferConfig.tiny() if tiny else TransferConfig.full_2b()).crossattn_proj_in_channels
    if pos.shape[-1] != want:
        kind = "tiny" if tiny else "full-size"
        raise CosmosError(
            f"embeddings have {pos.shape[-1]} channels; the {kind} model takes {want} (made with{'out' if tiny else ''} "
            "--tiny?)",
            file=path,
        )
    return pos, neg


def prompt_embeddings(
    spec: Spec,
    given: tuple[torch.Tensor, torch.Tensor] | None,
    files: ModelFiles,
    device: torch.device,
    make_encoder: Callable[[], text.PromptEncoder] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt (1, L, C), negative prompt (1, L, C)): those read from --prompt-embeddings, or encoded here
    (the real encoder through the embeddings cache, the tiny one directly). `make_encoder` gives the encoder
    (a batch keeps one where that is cheap, `runtime.pool`); by default it is built here."""
    if given is not None:
        return given
    if make_encoder is None:
        encoder = text.encoder_for(
            tiny=files.text_encoder is None, text_encoder_dir=files.text_encoder, device=str(device)
        )
    else:
        encoder = make_encoder()
    cache = None if files.text_encoder is None else text.EmbeddingCache(text.default_cache_dir())
    pos, neg = text.encode_prompts(encoder, [spec.prompt, spec.negative_prompt], cache)
    del encoder  # the 7B encoder leaves the device before the DiT is built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return pos[None], neg[None]


def image_context(image: np.ndarray | None, files: ModelFiles, net: Any, device: torch.device) -> Any:
    """(1, N, D) tokens of the style reference `image` ((H, W, 3) uint8, read in the inputs stage by
    `image_context.reference_image`), or None (the network then feeds zeros, as upstream)."""
    if image is None:
        return None
    cfg = net.config
    if files.image_encoder is None:
        encoder = tiny_image_encoder(cfg.image_context_dim, cfg.image_context_tokens)
    else:
        encoder = load_image_encoder(files.image_encoder, device, net.x_embedder.proj[1].weight.dtype)
    return encoder(image).to(device)
