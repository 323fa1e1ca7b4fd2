"""Depth and seg controls, mask prompts and the controls/masks commands, on tiny random-weight models.

The models are the transformers classes upstream's checkpoints load into, built from tiny configs and
saved with save_pretrained, then loaded through our own loading code (nothing is downloaded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cosmos_t2.cli import app
from cosmos_t2.controls.compute import compute_control, compute_control_with_info
from cosmos_t2.controls.depth import align_depth_sequence, render_depth
from cosmos_t2.controls.masks import load_mask, mask_from_prompt
from cosmos_t2.controls.models import ModelPaths, _load_sam2
from cosmos_t2.controls.run import compute_missing_controls
from cosmos_t2.controls.seg import color_masks, distinct_colors
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.video import read_video, write_video

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "red", "car", "road", "tree", "person"]


def build_tiny_depth(path: Path) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = dict(model_type="dinov2", hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=32, image_size=28, patch_size=14, reshape_hidden_states=False,
                    out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 16, 16], fusion_hidden_size=16,
        head_hidden_size=8, reassemble_hidden_size=16, depth_estimation_type="relative",
    )  # fmt: skip
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    # Depth-Anything-V2's processor settings, at a 28 px input instead of 518
    DPTImageProcessorPil(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], resample=3,
    ).save_pretrained(path)  # fmt: skip
    return path


def build_tiny_sam2(path: Path, size: int = 64) -> Path:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    # Hiera needs window sizes >= 2 after query pooling, global attention off the pooling blocks, and
    # the memory attention's hidden size a multiple of the (fixed) 64-channel memory.
    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1, image_size=[size, size],
                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                 num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                 global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2])  # fmt: skip
    vision = dict(model_type="sam2_vision_model", backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8],
                  backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
                  fpn_hidden_size=128)  # fmt: skip
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=128, image_size=size, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
        image_size=size, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32, memory_attention_rope_feat_sizes=[size // 16] * 2,
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=32, num_maskmem=2,
    )  # fmt: skip
    torch.manual_seed(0)
    Sam2VideoModel(config).save_pretrained(path)
    return path


def build_tiny_grounding(path: Path) -> Path:
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=4, image_size=64, out_features=["stage2", "stage3", "stage4"]),
        text_config=dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        num_queries=10, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, encoder_n_points=1,
        decoder_n_points=1, max_text_len=32,
    )  # fmt: skip
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(path)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor, BertTokenizer(str(path / "vocab.txt"))).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelPaths:
    root = tmp_path_factory.mktemp("models")
    return ModelPaths(
        depth_model_dir=build_tiny_depth(root / "depth"),
        seg_model_dir=build_tiny_sam2(root / "sam2"),
        grounding_model_dir=build_tiny_grounding(root / "grounding"),
    )


@pytest.fixture(autouse=True)
def no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COSMOS_T2_DEPTH_MODEL_DIR", "COSMOS_T2_SAM2_MODEL_DIR", "COSMOS_T2_GROUNDING_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)


def clip(num_frames: int = 5, height: int = 40, width: int = 56) -> np.ndarray:
    """A red block sliding over a textured road."""
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 120, (num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 12:28, 6 + 4 * t : 26 + 4 * t] = (220, 30, 30)
    return frames


def test_depth_runs_end_to_end_on_cpu(models: ModelPaths) -> None:
    frames = clip()
    video, info = compute_control_with_info("depth", frames, {"batch_size": 2}, models, "cpu")
    assert video.shape == frames.shape and video.dtype == np.uint8
    assert (video == video[..., :1]).all()  # grey
    assert video.min() == 0 and video.max() > 128  # min-max over the clip (its 1e-8 matters at tiny ranges)
    assert info["model_class"] == "DepthAnythingForDepthEstimation" and info["batch_size"] == 2
    again = compute_control("depth", frames, {"batch_size": 5}, models, "cpu")
    np.testing.assert_allclose(again.astype(int), video.astype(int), atol=1)  # batching changes nothing


def test_alignment_recovers_a_known_scale_and_shift() -> None:
    yy, xx = np.mgrid[0:32, 0:48]
    scene = 1.0 + xx / 48 + 0.5 * np.sin(yy / 5.0)  # disparity of a static scene
    scales = np.array([1.0, 2.5, 0.4, 7.0, 1.3])
    shifts = np.array([0.0, -3.0, 10.0, 0.5, -0.2])
    predicted = torch.tensor(scales[:, None, None] * scene + shifts[:, None, None])
    aligned = align_depth_sequence(predicted)
    torch.testing.assert_close(aligned, predicted[:1].expand_as(aligned), rtol=1e-9, atol=1e-9)
    frames = render_depth(aligned)
    assert (frames == frames[:1]).all()  # no flicker left

    # A moving object: the pixels it changes are left out of the fit, so the scale is still exact.
    truth = np.stack([scene + 2.0 * ((xx >= 4 + 3 * t) & (xx < 12 + 3 * t) & (yy < 10)) for t in range(5)])
    observed = torch.tensor(scales[:, None, None] * truth + shifts[:, None, None])
    aligned = align_depth_sequence(observed).numpy()
    error = np.abs(aligned - truth).mean(axis=(1, 2)) / np.ptp(truth)
    assert error.max() < 1e-9, error


def test_render_depth_is_upstreams_min_max_truncated() -> None:
    ramp = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 2, 2) * 10 + 3
    grey = render_depth(ramp)
    assert grey.shape == (1, 2, 2, 3)
    assert grey[0, :, :, 0].flatten().tolist() == [0, 63, 127, 255]  # 63.75 and 127.5 truncate


@pytest.fixture(scope="module")
def seg_run(models: ModelPaths) -> tuple[np.ndarray, dict]:
    return compute_control_with_info("seg", clip(), {"control_prompt": "a red car."}, models, "cpu")


def test_seg_runs_end_to_end_on_cpu(models: ModelPaths, seg_run: tuple[np.ndarray, dict]) -> None:
    frames = clip()
    video, info = seg_run
    assert video.shape == frames.shape and video.dtype == np.uint8
    detections = info["detections"]
    assert detections and all(len(d["box"]) == 4 for d in detections)
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
    palette = {tuple(c) for c in distinct_colors(len(detections), seed=0)} | {(0, 0, 0)}
    assert {tuple(c) for c in video.reshape(-1, 3)} <= palette  # only the objects' colours, on black
    again = compute_control("seg", frames, {"control_prompt": "a red car."}, models, "cpu")
    assert again.tobytes() == video.tobytes()  # seeded colours: the same bytes every run
    assert _load_sam2.cache_info().misses == 1  # loaded once per process


def test_color_masks_paints_largest_first() -> None:
    masks = np.zeros((2, 1, 8, 8), dtype=bool)
    masks[0, 0, 2:4, 2:4] = True  # small, listed first
    masks[1, 0, :6, :6] = True  # large: painted first, the small one on top
    colors = distinct_colors(2, seed=3)
    video = color_masks(masks, seed=3)
    assert (video[0, 2, 2] == colors[1]).all() and (video[0, 0, 0] == colors[0]).all()
    assert (video[0, 7, 7] == 0).all()


def test_missing_model_folders_name_the_option_and_variable(models: ModelPaths, tmp_path: Path) -> None:
    frames = clip(num_frames=1)
    with pytest.raises(CosmosError, match="--depth-model-dir DIR or set COSMOS_T2_DEPTH_MODEL_DIR"):
        compute_control("depth", frames, {}, ModelPaths(), "cpu")
    with pytest.raises(
        CosmosError, match=r"--seg-model-dir.*COSMOS_T2_SAM2_MODEL_DIR.*--grounding-model-dir"
    ):
        compute_control("seg", frames, {"control_prompt": "car"}, ModelPaths(), "cpu")
    with pytest.raises(CosmosError, match="does not exist"):
        compute_control("depth", frames, {}, ModelPaths(depth_model_dir=tmp_path / "nowhere"), "cpu")
    with pytest.raises(CosmosError, match="cannot load the Depth Anything V2 model"):
        compute_control("depth", frames, {}, ModelPaths(depth_model_dir=tmp_path), "cpu")
    env = {"COSMOS_T2_DEPTH_MODEL_DIR": str(models.depth_model_dir)}
    assert ModelPaths.from_env(environ=env).depth_model_dir == models.depth_model_dir
    assert (
        ModelPaths.from_env(depth_model_dir=tmp_path, environ=env).depth_model_dir == tmp_path
    )  # option wins


def test_empty_control_prompt_is_a_clear_error() -> None:
    with pytest.raises(CosmosError, match=r"seg\.control_prompt.*control_prompt is empty"):
        compute_control("seg", clip(num_frames=1), {"control_prompt": "  "}, ModelPaths(), "cpu")


def test_mask_prompt_is_the_union_of_the_objects(
    models: ModelPaths, seg_run: tuple[np.ndarray, dict]
) -> None:
    frames = clip()
    mask, info = mask_from_prompt(frames, "a red car.", models, "cpu")
    assert mask.shape == frames.shape[:3] and mask.dtype == bool
    seg = seg_run[0]
    np.testing.assert_array_equal(mask, seg.any(axis=-1))  # painted pixels = union of the objects
    assert len(info["detections"]) >= 1


def write_spec(tmp_path: Path, frames: np.ndarray, **controls: dict) -> Path:
    write_video(tmp_path / "input.mp4", frames, 16)
    spec = {"name": "job", "prompt": "a red car on a road", "video_path": "input.mp4", **controls}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json"


def test_compute_missing_controls_writes_lossless_videos(models: ModelPaths, tmp_path: Path) -> None:
    frames = clip(num_frames=4, height=40, width=56)
    spec_path = write_spec(
        tmp_path, frames, edge={}, vis={"control_path": "input.mp4"}, depth={}, seg={"control_prompt": "car."}
    )
    job = load_job(spec_path)
    written = compute_missing_controls(job, frames, tmp_path / "out", models, "cpu", fps=16)
    assert list(written) == ["edge", "depth", "seg"]  # vis has a control_path
    edge = read_video(written["edge"])
    np.testing.assert_array_equal(edge.frames.numpy(), compute_control("edge", frames, {}))  # lossless
    record = json.loads((tmp_path / "out" / "seg.json").read_text())
    assert record["control_prompt"] == "car." and record["num_frames"] == 4 and record["device"] == "cpu"
    assert (tmp_path / "out" / "depth.mp4").is_file() and record["preview"] == "seg.mp4"


def test_controls_and_masks_commands(models: ModelPaths, tmp_path: Path) -> None:
    frames = clip(num_frames=4, height=64, width=112)
    (tmp_path / "box.json").write_text(json.dumps({"shapes": [{"box": [0, 0, 8, 8]}]}))
    spec_path = write_spec(
        tmp_path, frames, edge={"preset_edge_threshold": "low", "mask_path": "box.json"},
        depth={"mask_prompt": "a red car."},
    )  # fmt: skip
    out = tmp_path / "out"
    runner = CliRunner()
    options = ["--device", "cpu", "--tiny"]
    dirs = [
        "--seg-model-dir",
        str(models.seg_model_dir),
        "--grounding-model-dir",
        str(models.grounding_model_dir),
    ]
    result = runner.invoke(app, ["controls", str(spec_path), "-o", str(out), *options])
    assert result.exit_code != 0 and "COSMOS_T2_DEPTH_MODEL_DIR" in str(result.exception)
    depth = ["--depth-model-dir", str(models.depth_model_dir)]
    result = runner.invoke(app, ["controls", str(spec_path), "-o", str(out), *options, *depth])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {"edge", "depth"}
    assert json.loads((out / "edge.json").read_text())["canny_lower"] == 50
    assert read_video(out / "depth.mkv").frames.shape == (4, 64, 112, 3)  # tiny 16:9 resolution
    result = runner.invoke(app, ["masks", str(spec_path), "-o", str(out), *options, *dirs])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {"edge", "depth"}
    assert load_mask(out / "edge_mask.mkv", 64, 112, 4)[:, :8, :8].all()
    assert json.loads((out / "depth_mask.json").read_text())["kind"] == "prompt"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_depth_and_seg_run_on_cuda(models: ModelPaths) -> None:
    frames = clip()
    depth = compute_control("depth", frames, {}, models, "cuda")  # bf16 autocast there
    assert depth.shape == frames.shape and depth.dtype == np.uint8 and depth.max() > 0
    seg, info = compute_control_with_info("seg", frames, {"control_prompt": "a red car."}, models, "cuda")
    assert seg.shape == frames.shape and info["detections"]


def test_a_fetched_model_folder_is_the_last_place_looked(
    models: ModelPaths, tmp_path: Path, repo_root: Path
) -> None:
    """`models fetch DIR` puts Depth Anything in DIR/depth_anything: `infer --model-dir DIR` computes depth
    controls with it when neither --depth-model-dir nor COSMOS_T2_DEPTH_MODEL_DIR names a folder."""
    from cosmos_t2.job.inputs import load_inputs
    from cosmos_t2.job.run import effective_spec
    from cosmos_t2.jobspec.load import load_job

    fetched = tmp_path / "checkpoints"
    fetched.mkdir()
    assert models.depth_model_dir is not None
    (fetched / "depth_anything").symlink_to(models.depth_model_dir, target_is_directory=True)
    found = ModelPaths.from_env(environ={}, model_dir=fetched)
    assert found.depth_model_dir == fetched / "depth_anything"
    assert found.seg_model_dir is None and found.grounding_model_dir is None  # not fetched: still asked for
    elsewhere = tmp_path / "elsewhere"
    env = {"COSMOS_T2_DEPTH_MODEL_DIR": str(elsewhere)}
    assert ModelPaths.from_env(environ=env, model_dir=fetched).depth_model_dir == elsewhere
    assert ModelPaths.from_env(depth_model_dir=tmp_path, model_dir=fetched).depth_model_dir == tmp_path

    spec_path = tmp_path / "depth.json"
    sample = {
        "name": "computed_depth",
        "video_path": str(repo_root / "examples/robot/input.mp4"),
        "prompt": "a robot",
        "depth": {"control_weight": 1.0},
    }
    spec_path.write_text(json.dumps(sample))
    spec = effective_spec(load_job(spec_path), True).spec
    inputs = load_inputs(spec, device="cpu", models=ModelPaths.from_env(model_dir=fetched))
    assert inputs.sources["depth"] == "computed"
    assert inputs.controls["depth"].shape == inputs.frames.shape
