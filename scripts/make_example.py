"""Render the bundled example, examples/robot: a robot arm and a sliding box in a brick-walled room.

Deterministic (numpy, a fixed seed, no randomness per run), so `tests/jobspec/test_example.py` can render it again
and compare. Because the geometry is known, the true depth and segmentation come out of the same z-buffer
as the colour: they are the `control_path`s of the depth and seg specs (no depth or segmentation model is
needed offline). Layout mirrors NVIDIA's assets/robot_example (input video, prompt, one spec per control,
a multi-control spec) with the files side by side, plus a two-sample batch.

    .venv/bin/python scripts/make_example.py [--out examples/robot]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from a checkout

from cosmos_t2.video import write_video  # noqa: E402

HEIGHT, WIDTH = 256, 448  # closest official ratio 16:9 -> 704x1280 at "720", 64x112 at "tiny"
NUM_FRAMES, FPS = 33, 16  # 1 + 4k frames: the VAE's temporal stride keeps every frame
SEED = 2025

# Camera: pinhole at eye height CAM_Y metres looking level; HORIZON is the row of the vanishing line.
FOCAL, HORIZON, CAM_Y = 300.0, 96.0, 1.0
WALL_Z = 6.0  # a brick wall facing the camera closes the room
NEAR_Z, FAR_Z = 1.5, WALL_Z  # depth video range (inverse depth, near = white, like depth models draw it)

WALL, FLOOR, ARM, BOX = 1, 2, 3, 4
SEG_COLOURS = np.array(
    [[0, 0, 0], [70, 110, 220], [230, 160, 40], [220, 40, 60], [40, 200, 120]], dtype=np.uint8
)  # index = label; flat colours, one per object

PROMPT = (
    "The video is captured from a fixed camera in a small robotics workshop with a red brick back wall and "
    "a polished checkered floor. A red industrial robot arm mounted on a dark grey pedestal swings its upper "
    "arm and forearm in smooth, steady motions, its two-finger gripper reaching forward. A green cardboard "
    "box with a white shipping label slides across the floor from right to left toward the base of the "
    "robot. Soft overhead lighting casts gentle shading on the metal surfaces and the floor tiles. The scene "
    "is realistic, sharp and well lit, with natural colours and steady motion."
)


@dataclass(frozen=True)
class Frames:
    """One rendered clip: each (T, H, W, 3) uint8."""

    rgb: np.ndarray
    depth: np.ndarray
    seg: np.ndarray


def render() -> Frames:
    """Render every frame: colour, depth (as the depth video) and segmentation (flat colours)."""
    textures = _textures(np.random.default_rng(SEED))
    background = _background(textures)  # the room is static: draw it once
    rgb, depth, seg = [], [], []
    for t in range(NUM_FRAMES):
        colour, z, label = _render_frame(t / (NUM_FRAMES - 1), background, textures)
        rgb.append(colour)
        disparity = (1.0 / z - 1.0 / FAR_Z) / (1.0 / NEAR_Z - 1.0 / FAR_Z)  # fixed range: no flicker
        depth.append(np.repeat(_to_uint8(255.0 * disparity)[..., None], 3, axis=-1))
        seg.append(SEG_COLOURS[label])
    return Frames(rgb=np.stack(rgb), depth=np.stack(depth), seg=np.stack(seg))


def _textures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Low-frequency noise fields (H, W) in [-1, 1]: surface grain that moves with the surfaces."""

    def smooth_noise(cell: int) -> np.ndarray:
        coarse = rng.uniform(-1.0, 1.0, (HEIGHT // cell + 2, WIDTH // cell + 2))
        fine = np.kron(coarse, np.ones((cell, cell)))
        # Box-average twice to soften the cell edges (separable, so it stays cheap and exact).
        for axis in (0, 1, 0, 1):
            fine = (fine + np.roll(fine, 1, axis) + np.roll(fine, -1, axis)) / 3.0
        return fine[:HEIGHT, :WIDTH]

    return {"wall": smooth_noise(6), "floor": smooth_noise(4), "box": smooth_noise(3)}


Layers = tuple[np.ndarray, np.ndarray, np.ndarray]  # colour (H, W, 3) float, depth (H, W) m, label (H, W)
_YS, _XS = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64) + 0.5  # pixel centres
_CX = WIDTH / 2.0


def _painter(layers: Layers) -> Callable[[np.ndarray, np.ndarray | float, np.ndarray, int], None]:
    """A function that draws one surface into `layers` in place, behind nearer ones."""
    colour, depth, label = layers

    def paint(mask: np.ndarray, z: np.ndarray | float, rgb: np.ndarray, object_label: int) -> None:
        z = np.broadcast_to(np.asarray(z, dtype=np.float64), mask.shape)
        visible = mask & (z < depth)  # z-buffer: nearer surfaces win, whatever the drawing order
        depth[visible] = z[visible]
        colour[visible] = np.broadcast_to(rgb, (*mask.shape, 3))[visible]
        label[visible] = object_label

    return paint


def _background(tex: dict[str, np.ndarray]) -> Layers:
    ys, xs, cx = _YS, _XS, _CX
    layers = (
        np.zeros((HEIGHT, WIDTH, 3)),
        np.full((HEIGHT, WIDTH), np.inf),
        np.zeros((HEIGHT, WIDTH), np.int64),
    )
    paint = _painter(layers)

    # Wall: bricks 0.4 x 0.15 m with mortar lines, every other row offset by half a brick.
    scale = FOCAL / WALL_Z
    wx, wy = (xs - cx) / scale, CAM_Y - (ys - HORIZON) / scale
    row = np.floor(wy / 0.15)
    bx = wx / 0.4 + 0.5 * (row % 2)
    mortar = (np.abs(bx - np.round(bx)) < 0.03) | (np.abs(wy / 0.15 - np.round(wy / 0.15)) < 0.07)
    brick = np.array([150, 62, 45]) * (1.0 + 0.12 * tex["wall"])[..., None]
    brick *= (1.0 + 0.08 * np.sin(3.1 * np.floor(bx) + 1.7 * row))[..., None]  # brick-to-brick tint
    paint(np.ones_like(mortar), WALL_Z, np.where(mortar[..., None], np.array([190, 185, 175]), brick), WALL)

    # Floor: 0.5 m checker tiles in perspective, darker with distance.
    below = ys > HORIZON + 1.0
    floor_z = np.where(below, FOCAL * CAM_Y / np.maximum(ys - HORIZON, 1e-6), 1e9)
    fx = (xs - cx) * floor_z / FOCAL
    checker = (np.floor(fx / 0.5) + np.floor(floor_z / 0.5)) % 2
    tile = np.where(checker[..., None] > 0, np.array([205, 200, 188]), np.array([95, 88, 80])).astype(float)
    tile *= (1.0 + 0.06 * tex["floor"] - 0.025 * np.clip(floor_z, 0, WALL_Z))[..., None]
    paint(below & (floor_z < WALL_Z), floor_z, tile, FLOOR)
    return layers


def _render_frame(phase: float, background: Layers, tex: dict[str, np.ndarray]) -> Layers:
    ys, xs, cx = _YS, _XS, _CX
    colour, depth, label = (layer.copy() for layer in background)
    paint = _painter((colour, depth, label))

    # Box: 0.5 m wide, 0.4 m tall and deep, sliding from right to left at 2.3 m; front face and lit top.
    box_x = 1.5 - 1.2 * phase
    front_z, back_z, top = 2.3, 2.7, 0.4
    s = FOCAL / front_z
    u, v = (xs - cx) / s - box_x, CAM_Y - (ys - HORIZON) / s  # metres on the front face's plane
    front = (np.abs(u) < 0.25) & (v > 0.0) & (v < top)
    card = np.array([60, 150, 85]) * (1.0 + 0.1 * np.roll(tex["box"], round(box_x * s), axis=1))[..., None]
    label_patch = (np.abs(u - 0.05) < 0.12) & (np.abs(v - 0.2) < 0.07)
    card = np.where(label_patch[..., None], np.array([235, 235, 228]), card)
    card = np.where(((np.abs(v - 0.2) < 0.008) & label_patch)[..., None], np.array([40, 40, 40]), card)
    paint(front, front_z, card, BOX)
    # The top is the plane y = `top` between front_z and back_z: its depth follows from the row.
    top_z = np.where(ys > HORIZON, FOCAL * (CAM_Y - top) / np.maximum(ys - HORIZON, 1e-6), 1e9)
    top_x = (xs - cx) * top_z / FOCAL - box_x
    top_face = (top_z >= front_z) & (top_z <= back_z) & (np.abs(top_x) < 0.25)
    paint(top_face, top_z, np.array([95, 190, 120]), BOX)

    # Robot arm at 3.2 m: pedestal, upper arm and forearm swinging, a two-finger gripper.
    arm_z = 3.2
    s = FOCAL / arm_z
    ax, ay = (xs - cx) / s, CAM_Y - (ys - HORIZON) / s  # metres in the arm's plane
    base_x = -0.7
    pedestal = (np.abs(ax - base_x) < 0.16) & (ay > 0.0) & (ay < 0.55)
    shade = (1.0 - 0.5 * np.abs(ax - base_x) / 0.16)[..., None]  # a cylinder-like falloff
    paint(pedestal, arm_z + 0.05, np.array([70, 72, 78]) * (0.7 + 0.3 * shade), ARM)
    swing = np.sin(2.0 * np.pi * phase)
    shoulder = np.array([base_x, 0.55])
    a1 = np.deg2rad(55.0 + 30.0 * swing)  # from horizontal, counter-clockwise, towards +x
    elbow = shoulder + 0.6 * np.array([np.cos(a1), np.sin(a1)])
    a2 = a1 - np.deg2rad(95.0 + 25.0 * np.sin(2.0 * np.pi * phase + 1.0))
    wrist = elbow + 0.5 * np.array([np.cos(a2), np.sin(a2)])
    red = np.array([200, 40, 35])
    for start, angle, length, width in ((shoulder, a1, 0.6, 0.07), (elbow, a2, 0.5, 0.055)):
        along, across = _segment_coords(ax, ay, start, angle)
        link = (along > -width) & (along < length + width) & (np.abs(across) < width)
        stripe = np.abs(across) < 0.3 * width  # a lighter ridge along each link reads as a 3D bar
        paint(
            link,
            arm_z,
            np.where(stripe[..., None], red * 1.25, red * (1 - 2.5 * np.abs(across))[..., None]),
            ARM,
        )
    for joint in (shoulder, elbow):
        paint(
            (ax - joint[0]) ** 2 + (ay - joint[1]) ** 2 < 0.08**2, arm_z - 0.01, np.array([40, 40, 45]), ARM
        )
    grip = 0.04 + 0.03 * (1.0 + np.cos(2.0 * np.pi * phase))  # fingers open and close
    for side in (-1.0, 1.0):
        along, across = _segment_coords(ax, ay, wrist, a2)
        finger = (along > 0.0) & (along < 0.14) & (np.abs(across - side * grip) < 0.018)
        paint(finger, arm_z - 0.01, np.array([180, 180, 185]), ARM)
    palm_along, palm_across = _segment_coords(ax, ay, wrist, a2)
    paint(
        (np.abs(palm_along) < 0.025) & (np.abs(palm_across) < grip + 0.02),
        arm_z - 0.01,
        np.array([150, 150, 158]),
        ARM,
    )

    return _to_uint8(colour), depth, label


def _segment_coords(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along and across a link that starts at `start` and points at `angle`."""
    dx, dy = x - start[0], y - start[1]
    c, s = np.cos(angle), np.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def spec_files(prompt_file: str = "prompt.txt", video: str = "input.mp4") -> dict[str, object]:
    """The specs, keyed by file name. Paths are relative to the spec's folder, as upstream resolves them."""
    common = {"prompt_path": prompt_file, "video_path": video, "resolution": "720", "guidance": 3}
    specs: dict[str, object] = {
        "edge.json": {"name": "robot_edge", **common, "edge": {"control_weight": 1.0}},
        "vis.json": {"name": "robot_vis", **common, "vis": {"control_weight": 1.0}},
        "depth.json": {
            "name": "robot_depth",
            **common,
            "depth": {"control_path": "depth.mp4", "control_weight": 1.0},
        },
        "seg.json": {
            "name": "robot_seg",
            **common,
            "seg": {"control_path": "seg.mp4", "control_weight": 1.0},
        },
        # As upstream's multicontrol spec: depth 0.5, edge at its default 1.0, seg 1.0, vis 0.5.
        "multicontrol.json": {
            "name": "robot_multicontrol",
            **common,
            "depth": {"control_path": "depth.mp4", "control_weight": 0.5},
            "edge": {"control_weight": 1.0},
            "seg": {"control_path": "seg.mp4", "control_weight": 1.0},
            "vis": {"control_weight": 0.5},
        },
    }
    specs["batch.jsonl"] = [
        {"name": "robot_edge_low", **common, "seed": 1, "edge": {"preset_edge_threshold": "low"}},
        {"name": "robot_depth_edge", **common, "seed": 2, "depth": {"control_path": "depth.mp4", "control_weight": 0.7},
         "edge": {"control_weight": 0.3}},
    ]  # fmt: skip
    return specs


def write_example(out_dir: Path, frames: Frames | None = None) -> list[Path]:
    """Write every file of the example into out_dir (rendering unless `frames` are given); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = frames if frames is not None else render()
    written = [
        write_video(out_dir / "input.mp4", frames.rgb, FPS),
        write_video(out_dir / "depth.mp4", frames.depth, FPS),
        write_video(out_dir / "seg.mp4", frames.seg, FPS),
    ]
    (out_dir / "prompt.txt").write_text(PROMPT + "\n")
    written.append(out_dir / "prompt.txt")
    for name, content in spec_files().items():
        path = out_dir / name
        if isinstance(content, list):
            path.write_text("".join(json.dumps(sample) + "\n" for sample in content))
        else:
            path.write_text(json.dumps(content, indent=2) + "\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "robot")
    args = parser.parse_args()
    paths = write_example(args.out)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        print(f"{p.stat().st_size:>9,d}  {p}")
    print(f"{total:>9,d}  bytes in all")


if __name__ == "__main__":
    main()
