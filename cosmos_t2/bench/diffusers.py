"""The comparison side of `cosmos-t2 bench --compare diffusers`.

Times diffusers' Cosmos 2.5 transformer + controlnet(s) at our config's shapes exactly as its
`Cosmos2_5_TransferPipeline` runs one denoising step: controlnet then transformer, once for the prompt and once
for the negative prompt (two B=1 passes), raw 100352-channel text features projected inside each pass.

`compiled=True` times them as a performance-minded diffusers user runs them: regional compilation, the way
diffusers documents it (`ModelMixin.compile_repeated_blocks(fullgraph=True)`, which `torch.compile`s every
module of a class in `_repeated_blocks`). diffusers' Cosmos models do not declare `_repeated_blocks` (0.42), so
it is set to their one repeated class, `CosmosTransformerBlock`, exactly what that call then compiles. If a
block does not trace as one graph, it is compiled again with graph breaks allowed (`fullgraph` in the result).
diffusers is an optional dependency (the `dev` extra; wheels on the GPU machine).
"""

from __future__ import annotations

import statistics

import torch

from cosmos_t2.bench.timing import time_callable
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.config import TransferConfig

# diffusers' constructor argument -> the TransferConfig field that gives it: both models, then each one's own.
SHARED_FIELDS = {
    "num_attention_heads": "num_heads",
    "attention_head_dim": "head_dim",
    "mlp_ratio": "mlp_ratio",
    "text_embed_dim": "crossattn_emb_channels",
    "adaln_lora_dim": "adaln_lora_dim",
    "max_size": "max_size",
    "patch_size": "patch_size",
    "rope_scale": "rope_scale",
    "crossattn_proj_in_channels": "crossattn_proj_in_channels",
    "encoder_hidden_states_channels": "crossattn_emb_channels",
    "img_context_dim_in": "image_context_dim",
    "img_context_dim_out": "model_channels",
}
TRANSFORMER_FIELDS = {
    "out_channels": "latent_channels",
    "num_layers": "num_blocks",
    "controlnet_block_every_n": "control_block_every_n",
    "img_context_num_tokens": "image_context_tokens",
}
CONTROLNET_FIELDS = {
    "n_controlnet_blocks": "num_control_blocks",
    "in_channels": "control_in_channels",
    "latent_channels": "x_in_channels",
    "model_channels": "model_channels",
}


def diffusers_kwargs(cfg: TransferConfig) -> tuple[dict, dict]:
    """Constructor arguments of (CosmosTransformer3DModel, CosmosControlNetModel) for `cfg` (the values of
    diffusers' conversion script for "Cosmos-2.5-Transfer-General-2B" at full size)."""

    def fields(names: dict[str, str]) -> dict:
        return {argument: getattr(cfg, field) for argument, field in names.items()}

    common = {**fields(SHARED_FIELDS), "extra_pos_embed_type": None, "use_crossattn_projection": True}
    transformer = {
        **common,
        **fields(TRANSFORMER_FIELDS),
        "in_channels": cfg.latent_channels + 1,  # + the padding mask
        "concat_padding_mask": True,
    }
    return transformer, {**common, **fields(CONTROLNET_FIELDS)}


REPEATED_BLOCK = "CosmosTransformerBlock"


def compile_regions(models: list[torch.nn.Module], fullgraph: bool) -> None:
    """diffusers' regional compilation of each model's repeated blocks."""
    for model in models:
        if not getattr(model, "_repeated_blocks", None):
            model._repeated_blocks = [REPEATED_BLOCK]
        model.compile_repeated_blocks(fullgraph=fullgraph)


@torch.no_grad()
def bench_diffusers(
    cfg: TransferConfig, preset, opts, device: torch.device, *, compiled: bool = False
) -> dict:
    """Seconds per CFG step and peak memory of diffusers' models (random weights, same dtype as ours)."""
    try:
        from diffusers import CosmosControlNetModel, CosmosTransformer3DModel
    except ImportError as exc:
        raise CosmosError(f"--compare diffusers needs diffusers installed ({exc})", key="--compare") from exc
    dtype = torch.bfloat16 if opts.dtype == "bf16" else torch.float32
    t_kwargs, c_kwargs = diffusers_kwargs(cfg)
    torch.manual_seed(0)
    transformer = CosmosTransformer3DModel(**t_kwargs).to(device=device, dtype=dtype).eval()
    controlnets = [
        CosmosControlNetModel(**c_kwargs).to(device=device, dtype=dtype).eval()
        for _ in range(len(opts.controls))
    ]
    for model in (transformer, *controlnets):
        for p in model.parameters():
            p.normal_(0.0, p.shape[-1] ** -0.5)

    t, h, w = preset.latent_grid()
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    latents = randn(1, cfg.latent_channels, t, h, w)
    controls = [randn(1, cfg.latent_channels, t, h, w) for _ in controlnets]
    cond_mask = torch.zeros(1, 1, t, h, w, device=device, dtype=dtype)
    timestep = torch.full((1, 1, t, 1, 1), 0.5, device=device, dtype=dtype)
    padding = torch.zeros(1, 1, preset.height, preset.width, device=device, dtype=dtype)
    image = torch.zeros(1, cfg.image_context_tokens, cfg.image_context_dim, device=device, dtype=dtype)
    prompts = [(randn(1, 512, cfg.crossattn_proj_in_channels), image) for _ in range(2)]

    def one_pass(text: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # What the pipeline gives the controlnets and the transformer alike at this step.
        step_inputs = dict(
            timestep=timestep, encoder_hidden_states=text, condition_mask=cond_mask, padding_mask=padding,
            return_dict=False,
        )  # fmt: skip
        hints = None
        for controlnet, control in zip(controlnets, controls, strict=True):
            out = controlnet(
                controls_latents=control, latents=latents, conditioning_scale=1.0, **step_inputs
            )[0]
            hints = out if hints is None else [a + b for a, b in zip(hints, out, strict=True)]
        return transformer(hidden_states=latents, block_controlnet_hidden_states=hints, **step_inputs)[0]

    def step() -> None:
        cond, uncond = (one_pass(p) for p in prompts)
        _ = cond + 3.0 * (cond - uncond)

    extra: dict = {}
    if compiled:
        models = [transformer, *controlnets]
        compile_regions(models, fullgraph=True)
        try:
            step()
        except Exception as exc:  # torch._dynamo's Unsupported and kin: let the blocks break into graphs
            compile_regions(models, fullgraph=False)
            extra["fullgraph_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        extra["fullgraph"] = "fullgraph_error" not in extra
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_callable(step, device, opts.warmup, opts.iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"step_s": statistics.median(times), "step_times_s": times, "peak_gib": peak, **extra}
