"""Test-only bridge to diffusers' Cosmos 2.5 Transfer models, the independent parity oracle.

- `build_diffusers_models(cfg, n_controls)`: CosmosTransformer3DModel + CosmosControlNetModel(s) shaped like our
  TransferConfig, with random weights; the controlnets' copies of shared modules (patch_embed_base, time_embed,
  crossattn_proj, img_context_proj) are set equal to the transformer's, as they are in a converted checkpoint.
- `diffusers_to_official_state_dict(transformer_sd, controlnet_sds)`: the inverse of the rename table in diffusers'
  `scripts/convert_cosmos_to_diffusers.py` (TRANSFORMER_KEYS_RENAME_DICT_COSMOS_2_0 / CONTROLNET_KEYS_RENAME_DICT),
  giving official key names; two or more controlnets map to the official multi-branch names.

diffusers resizes the padding mask with torchvision, which this environment lacks; `install_torchvision_shim`
gives its Cosmos modules the one function they use (nearest resize == torchvision's tensor path).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from diffusers import CosmosControlNetModel, CosmosTransformer3DModel
from diffusers.models.controlnets import controlnet_cosmos
from diffusers.models.transformers import transformer_cosmos

from cosmos_t2.bench.diffusers import diffusers_kwargs
from cosmos_t2.model.config import TransferConfig

# diffusers -> official, applied in order to the part of a key below `transformer_blocks.N.` / `control_blocks.N.`
_BLOCK_RENAMES = (
    ("norm1.linear_1.", "adaln_modulation_self_attn.1."),
    ("norm1.linear_2.", "adaln_modulation_self_attn.2."),
    ("norm2.linear_1.", "adaln_modulation_cross_attn.1."),
    ("norm2.linear_2.", "adaln_modulation_cross_attn.2."),
    ("norm3.linear_1.", "adaln_modulation_mlp.1."),
    ("norm3.linear_2.", "adaln_modulation_mlp.2."),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    ("to_q.", "q_proj."),
    ("to_k.", "k_proj."),
    ("to_v.", "v_proj."),
    ("to_out.0.", "output_proj."),
    ("norm_q.", "q_norm."),
    ("norm_k.", "k_norm."),
    ("ff.net.0.proj.", "mlp.layer1."),
    ("ff.net.2.", "mlp.layer2."),
)
_TOP_RENAMES = {
    "patch_embed.proj.weight": "x_embedder.proj.1.weight",
    "time_embed.t_embedder.linear_1.weight": "t_embedder.1.linear_1.weight",
    "time_embed.t_embedder.linear_2.weight": "t_embedder.1.linear_2.weight",
    "time_embed.norm.weight": "t_embedding_norm.weight",
    "norm_out.linear_1.weight": "final_layer.adaln_modulation.1.weight",
    "norm_out.linear_2.weight": "final_layer.adaln_modulation.2.weight",
    "proj_out.weight": "final_layer.linear.weight",
}
# Controlnet modules that duplicate backbone modules (diffusers keeps a copy for CPU offloading).
SHARED_IN_CONTROLNET = {
    "patch_embed_base.": "patch_embed.",
    "time_embed.": "time_embed.",
    "crossattn_proj.": "crossattn_proj.",
    "img_context_proj.": "img_context_proj.",
}


def install_torchvision_shim() -> None:
    def resize(img: torch.Tensor, size: list[int], interpolation: str = "nearest") -> torch.Tensor:
        return F.interpolate(img, size=list(size), mode=interpolation)

    shim = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=resize),
        InterpolationMode=types.SimpleNamespace(NEAREST="nearest"),
    )
    for module in (transformer_cosmos, controlnet_cosmos):
        if not hasattr(module, "transforms"):
            module.transforms = shim


def transformer_kwargs(cfg: TransferConfig) -> dict:
    return diffusers_kwargs(cfg)[0]


def controlnet_kwargs(cfg: TransferConfig) -> dict:
    return diffusers_kwargs(cfg)[1]


@torch.no_grad()
def build_diffusers_models(
    cfg: TransferConfig, n_controls: int = 1, seed: int = 0
) -> tuple[CosmosTransformer3DModel, list[CosmosControlNetModel]]:
    """Random-weight diffusers models in fp32, eval mode. Norm weights are randomised too (they start at one),
    so a mix-up of q/k norms or of image/text norms cannot hide."""
    install_torchvision_shim()
    torch.manual_seed(seed)
    transformer = CosmosTransformer3DModel(**transformer_kwargs(cfg)).eval()
    controlnets = [CosmosControlNetModel(**controlnet_kwargs(cfg)).eval() for _ in range(n_controls)]
    for model in (transformer, *controlnets):
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    shared = transformer.state_dict()
    for net in controlnets:
        own = net.state_dict()
        for key in own:
            for net_prefix, transformer_prefix in SHARED_IN_CONTROLNET.items():
                if key.startswith(net_prefix):
                    own[key].copy_(shared[transformer_prefix + key.removeprefix(net_prefix)])
    return transformer, controlnets


def _rename_block_key(rest: str) -> str:
    for old, new in _BLOCK_RENAMES:
        rest = rest.replace(old, new)
    return rest


def transformer_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            out[f"blocks.{index}.{_rename_block_key(rest)}"] = value
        else:
            out[_TOP_RENAMES.get(key, key)] = value
    return out


def controlnet_to_official(sd: dict[str, torch.Tensor], branch: int | None = None) -> dict[str, torch.Tensor]:
    """Official keys of one control branch (single-branch names when `branch` is None)."""
    embedder = "control_embedder" if branch is None else f"control_embedder.{branch}"
    blocks = "control_blocks" if branch is None else f"control_blocks_{branch}"
    out = {}
    for key, value in sd.items():
        if key.startswith("control_blocks."):
            _, index, rest = key.split(".", 2)
            out[f"{blocks}.{index}.{_rename_block_key(rest)}"] = value
        elif key == "patch_embed.proj.weight":
            out[f"{embedder}.proj.1.weight"] = value
        elif not key.startswith(tuple(SHARED_IN_CONTROLNET)):
            raise KeyError(f"unmapped controlnet key {key}")
    return out


def diffusers_to_official_state_dict(
    transformer_sd: dict[str, torch.Tensor], controlnet_sds: list[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Official state dict of a TransferNet with len(controlnet_sds) branches. The controlnets' duplicated
    shared modules must equal the transformer's (they are one module officially)."""
    for sd in controlnet_sds:
        for key, value in sd.items():
            for net_prefix, transformer_prefix in SHARED_IN_CONTROLNET.items():
                if key.startswith(net_prefix):
                    twin = transformer_sd[transformer_prefix + key.removeprefix(net_prefix)]
                    if not torch.equal(value, twin):
                        raise ValueError(f"controlnet {key} differs from the transformer's copy")
    out = transformer_to_official(transformer_sd)
    single = len(controlnet_sds) == 1
    for n, sd in enumerate(controlnet_sds):
        out.update(controlnet_to_official(sd, None if single else n))
    return out
