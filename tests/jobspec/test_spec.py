"""The spec model: official keys and defaults, JSONC/JSONL, overrides, job-spec round trip, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import (
    DEFAULT_NEGATIVE_PROMPT,
    MODALITIES,
    RESOLUTIONS,
    ControlSpec,
    Spec,
    normalized_control_weights,
)
from cosmos_t2.jobspec.load import load_batch, load_job, load_specs, write_job_spec
from cosmos_t2.jobspec.parse import parse_set_options, strip_jsonc

# The multi-control example of NVIDIA's inference guide (docs/inference.md), paths shortened: JSONC with
# comments, output_dir in the file, no name, and a trailing comma before a comment-only line.
OFFICIAL_DOC_EXAMPLE = """{
    // Path to the prompt file, use "prompt" to directly specify the prompt
    "prompt_path": "assets/robot_prompt.txt",

    // Directory to save the generated video
    "output_dir": "outputs/robot_multicontrol",

    // Path to the input video
    "video_path": "assets/robot_input.mp4",

    // Inference settings:
    "guidance": 3,

    // Depth control settings
    "depth": {
        // Path to the control video
        // If a control is not provided, it will be computed on the fly.
        "control_path": "assets/depth/robot_depth.mp4",

        // Control weight for the depth control
        "control_weight": 0.5
    },

    // Edge control settings
    "edge": {
        // Path to the control video
        "control_path": "assets/edge/robot_edge.mp4",
        // Default control weight of 1.0 for edge control
    },

    // Seg control settings
    "seg": {
        // Path to the control video
        "control_path": "assets/seg/robot_seg.mp4",

        // Control weight for the seg control
        "control_weight": 1.0
    },

    // Blur control settings
    "vis":{
        // Control video computed on the fly
        "control_weight": 0.5
    }
}
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A folder with the files specs point at (only their existence is checked here)."""
    for rel in [
        "in.mp4",
        "edge.mp4",
        "mask.mp4",
        "style.jpg",
        "assets/robot_input.mp4",
        "assets/depth/robot_depth.mp4",
        "assets/edge/robot_edge.mp4",
        "assets/seg/robot_seg.mp4",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "prompt.txt").write_text("  A robot arm in a bright lab.\n\n")
    (tmp_path / "assets/robot_prompt.txt").write_text("A robot arm.\n")
    return tmp_path


def write(folder: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def minimal(**extra: Any) -> dict[str, Any]:
    return {"prompt": "a red car", "video_path": "in.mp4", "edge": {}} | extra


def test_official_doc_example_parses_with_defaults(
    ws: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = write(ws, "robot_multicontrol.json", OFFICIAL_DOC_EXAMPLE)
    elsewhere = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)  # relative paths resolve against the spec's folder, not the working directory
        (spec,) = load_specs(path)
    assert spec.name == "robot_multicontrol"
    assert spec.prompt == "A robot arm."
    assert spec.prompt_path == ws / "assets/robot_prompt.txt"
    assert spec.video_path == ws / "assets/robot_input.mp4"
    assert spec.output_dir == ws / "outputs/robot_multicontrol"
    assert list(spec.controls) == ["edge", "vis", "depth", "seg"]  # official order, not the file's
    assert spec.controls["depth"].control_path == ws / "assets/depth/robot_depth.mp4"
    assert spec.controls["edge"].control_weight == 1.0
    assert spec.controls["vis"] == ControlSpec(
        modality="vis", control_weight=0.5, preset_blur_strength="medium"
    )
    assert spec.controls["seg"].control_prompt is None  # given control video: no segmentation prompt
    assert (spec.seed, spec.guidance, spec.num_steps) == (2025, 3, 35)
    assert (spec.num_video_frames_per_chunk, spec.num_conditional_frames, spec.resolution) == (93, 1, "720")
    assert spec.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert spec.negative_prompt.startswith("The video captures a game playing, with bad crappy graphics")
    assert spec.keep_input_resolution and not spec.show_input and not spec.show_control_condition
    assert spec.max_frames is None and spec.sigma_max is None
    assert spec.guided_generation_step_threshold == 25
    assert tuple(MODALITIES) == ("edge", "vis", "depth", "seg") and RESOLUTIONS == ("720", "480", "tiny")


def test_every_key_is_read(ws: Path) -> None:
    np.savez(ws / "gg.npz", np.zeros((1, 4, 4), np.uint8))
    data = {
        "name": "all",
        "prompt": "p",
        "negative_prompt": "n",
        "video_path": "in.mp4",
        "output_dir": "out",
        "seed": 7,
        "guidance": 0,
        "num_steps": 4,
        "resolution": "480",
        "num_video_frames_per_chunk": 5,
        "num_conditional_frames": 2,
        "max_frames": 1,
        "sigma_max": "80",  # upstream types it as a string
        "keep_input_resolution": False,
        "show_control_condition": True,
        "show_input": True,
        "context_frame_index": 3,
        "image_context_path": "style.jpg",
        "guided_generation_mask": "gg.npz",  # labels select from a .npz label array only
        "guided_generation_step_threshold": 10,
        "guided_generation_foreground_labels": [1, 3],
        "edge": {"control_path": "edge.mp4", "preset_edge_threshold": "very_high", "mask_path": "mask.mp4"},
        "depth": {"control_weight": 0.25, "mask_prompt": "car"},
        "seg": {"control_prompt": "car building", "control_weight": 0},
    }
    (spec,) = load_specs(write(ws, "all.json", data))
    assert spec.to_dict()["sigma_max"] == 80.0 and spec.sigma_max == 80.0
    assert spec.guided_generation_mask == ws / "gg.npz"
    assert spec.guided_generation_foreground_labels == (1, 3)
    assert spec.controls["edge"] == ControlSpec(
        modality="edge",
        control_path=ws / "edge.mp4",
        mask_path=ws / "mask.mp4",
        preset_edge_threshold="very_high",
    )
    assert spec.controls["depth"].mask_prompt == "car"
    assert spec.controls["seg"].control_prompt == "car building"
    out = spec.to_dict()
    for key, value in data.items():
        if key not in MODALITIES and key not in ("sigma_max",):
            expected = str(ws / value) if key.endswith(("_path", "_dir", "_mask")) else value
            assert out[key] == expected, key


def test_seg_control_prompt_defaults_to_first_128_words(ws: Path) -> None:
    words = [f"w{i}" for i in range(200)]
    (spec,) = load_specs(write(ws, "s.json", minimal(prompt="  ".join(words), seg={}, edge=None)))
    assert spec.controls["seg"].control_prompt == " ".join(words[:128])
    assert list(spec.controls) == ["seg"]  # a null block counts as absent


def test_jsonl_names_comments_and_pick(ws: Path) -> None:
    text = "\n".join(
        [
            json.dumps(minimal()),
            "// a comment line is skipped",
            json.dumps(minimal(name="second", seed=1)),
            json.dumps(minimal(seed=2)) + "  // trailing comment",
        ]
    )
    path = write(ws, "batch.jsonl", text + "\n")
    specs = load_specs(path)
    assert [s.name for s in specs] == ["batch_1", "second", "batch_4"]
    assert [s.seed for s in specs] == [2025, 1, 2]
    (picked,) = load_specs(path, name="second")
    assert picked == specs[1]
    assert load_job(path, name="second") == specs[1]
    with pytest.raises(CosmosError, match=r"batch\.jsonl: 3 samples here .*pick one with --name"):
        load_job(path)


def test_overrides_win_and_resolve_paths_against_cwd(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(ws, "o.json", minimal(seed=1, depth={"control_weight": 0.9, "mask_path": "mask.mp4"}))
    cwd = ws / "cwd"
    (cwd / "sub").mkdir(parents=True)
    (cwd / "sub/edge2.mp4").write_bytes(b"")
    monkeypatch.chdir(cwd)
    overrides = parse_set_options(
        [
            "seed=7",
            "depth.control_weight=0.5",
            "resolution=480",
            "prompt=a blue car",
            "edge.control_path=sub/edge2.mp4",
        ]
    )
    assert overrides["seed"] == 7 and overrides["prompt"] == "a blue car"
    (spec,) = load_specs(path, overrides)
    assert spec.seed == 7 and spec.resolution == "480" and spec.prompt == "a blue car"
    assert spec.controls["depth"].control_weight == 0.5
    assert spec.controls["depth"].mask_path == ws / "mask.mp4"  # untouched keys stay from the file
    assert spec.controls["edge"].control_path == cwd / "sub/edge2.mp4"
    # nested dicts are the same overrides; {} adds a block and null removes one
    (nested,) = load_specs(path, {"depth": {"control_weight": 0.5}, "vis": {}, "edge": None})
    assert list(nested.controls) == ["vis", "depth"]
    assert nested.controls["depth"].control_weight == 0.5


def test_job_spec_round_trip(ws: Path) -> None:
    data = minimal(prompt=None, prompt_path="prompt.txt", seg={"mask_prompt": "car"}, sigma_max=80)
    (spec,) = load_specs(write(ws, "rt.json", data))
    assert spec.prompt == "A robot arm in a bright lab."
    job = write_job_spec(spec, ws / "jobs" / "rt.job.json")
    assert not [p for p in job.parent.iterdir() if p != job]  # no temp file left behind
    (again,) = load_specs(job)
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert all(Path(v).is_absolute() for k, v in spec.to_dict().items() if k.endswith("_path") and v)


def test_a_job_spec_keeps_whether_num_steps_was_given(ws: Path) -> None:
    """A sweep's job spec is a spec written by `write_job_spec`: one that left num_steps to the default must
    still leave it there, or the distilled model would run 35 steps in every sweep (measured 2026-12-08 on an
    H100: 140 s a job instead of 18 s). One that asked for 35 keeps asking."""
    from cosmos_t2.job.settings import distilled_settings, effective_spec
    from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS

    for extra, steps in (({}, DISTILLED_NUM_STEPS), ({"num_steps": 35}, 35), ({"num_steps": 6}, 6)):
        (spec,) = load_specs(write(ws, "steps.json", minimal(**extra)))
        (again,) = load_specs(write_job_spec(spec, ws / "jobs" / "steps.job.json"))
        assert again.num_steps_given == spec.num_steps_given == bool(extra)
        assert ("num_steps" in again.to_dict()) == bool(extra)
        distilled = distilled_settings(effective_spec(again, tiny=False)).spec
        assert distilled.num_steps == steps, extra


def test_normalized_control_weights_follow_upstream() -> None:
    def spec(mask: bool = False, **weights: float) -> Spec:
        controls = {
            m: ControlSpec(modality=m, control_weight=w, mask_prompt="robot" if mask and i == 0 else None)
            for i, (m, w) in enumerate(weights.items())
        }
        return Spec(name="n", prompt="p", video_path=Path("/v.mp4"), controls=controls)

    # without masks, upstream uses the weights as given, even above a sum of 1
    assert normalized_control_weights(spec(edge=1.0, depth=0.5, seg=0.5)) == {
        "edge": 1.0,
        "depth": 0.5,
        "seg": 0.5,
    }
    # with a mask, the sum is capped at 1 (never scaled up)
    assert normalized_control_weights(spec(True, edge=0.3, depth=0.5)) == {"edge": 0.3, "depth": 0.5}
    scaled = normalized_control_weights(spec(True, edge=1.0, depth=0.5, seg=0.5))
    assert scaled == pytest.approx({"edge": 0.5, "depth": 0.25, "seg": 0.25})
    assert sum(scaled.values()) == pytest.approx(1.0)


def test_strip_jsonc_keeps_strings_and_positions() -> None:
    text = '{"a": "// not a comment", /* c */ "b": [1, 2,], // x\n "c": "\\"/*"}'
    stripped = strip_jsonc(text)
    assert len(stripped) == len(text)
    assert json.loads(stripped) == {"a": "// not a comment", "b": [1, 2], "c": '"/*'}


# --- bad input: one message naming the file, the key path and what was expected --------------

BAD_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # id, changes to a minimal valid spec (None removes a key), key path, expected text
    ("unknown key", {"sede": 1}, "sede", "unknown key (did you mean 'seed'?)"),
    ("unknown nested key", {"edge": {"control_wieght": 1}}, "edge.control_wieght", "did you mean 'control_weight'"),
    ("key of another modality", {"edge": {"preset_blur_strength": "low"}}, "edge.preset_blur_strength", "unknown"),
    ("wrong type int", {"seed": "abc"}, "seed", "expected an integer, got 'abc' (a string)"),
    ("wrong type bool", {"show_input": "yes"}, "show_input", "expected true or false"),
    ("wrong type block", {"depth": 1}, "depth", "expected an object"),
    ("wrong type path", {"video_path": 3}, "video_path", "expected a file path"),
    ("weight out of range", {"depth": {"control_weight": 1.5}}, "depth.control_weight", "expected a number in [0, 1], got 1.5"),
    ("weight negative", {"edge": {"control_weight": -0.1}}, "edge.control_weight", "in [0, 1]"),
    ("guidance out of range", {"guidance": 8}, "guidance", "expected an integer in [0, 7], got 8"),
    ("num_steps zero", {"num_steps": 0}, "num_steps", "expected an integer in [1, 1000], got 0"),
    ("sigma_max out of range", {"sigma_max": "300"}, "sigma_max", "[0, 200]"),
    ("missing video file", {"video_path": "nope.mp4"}, "video_path", "file not found"),
    ("missing video key", {"video_path": None}, "video_path", "missing"),
    ("missing control file", {"edge": {"control_path": "edge_missing.mp4"}}, "edge.control_path", "file not found"),
    ("missing mask file", {"seg": {"mask_path": "m.mp4"}}, "seg.mask_path", "file not found"),
    ("missing prompt file", {"prompt": None, "prompt_path": "p.txt"}, "prompt_path", "file not found"),
    ("missing style image", {"image_context_path": "s.jpg"}, "image_context_path", "file not found"),
    ("both prompts", {"prompt_path": "prompt.txt"}, "prompt", "either 'prompt' or 'prompt_path', not both"),
    ("neither prompt", {"prompt": None}, "prompt", "missing: give 'prompt'"),
    ("unsupported resolution", {"resolution": "1080"}, "resolution", 'expected one of "720", "480", "tiny"'),
    ("conditional frames", {"num_conditional_frames": 3}, "num_conditional_frames", "in [0, 2], got 3"),
    ("preset", {"edge": {"preset_edge_threshold": "max"}}, "edge.preset_edge_threshold", '"very_low"'),
    ("blank mask prompt", {"depth": {"mask_prompt": "  "}}, "depth.mask_prompt", "is blank: name the objects"),
    ("blank seg prompt", {"seg": {"control_prompt": ""}}, "seg.control_prompt", "is blank: name the objects to segment"),
    ("vis with style image", {"vis": {}, "image_context_path": "style.jpg"}, "image_context_path", "conflicts"),
    ("bad name", {"name": "a/b"}, "name", "without '/'"),
    ("labels", {"guided_generation_foreground_labels": [1, "x"]}, "guided_generation_foreground_labels", "integers"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "key", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_names_file_and_key(ws: Path, changes: dict[str, Any], key: str, expected: str) -> None:
    data = {k: v for k, v in (minimal() | changes).items() if v is not None}
    path = write(ws, "spec.json", data)
    with pytest.raises(CosmosError) as info:
        load_specs(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}': "), message
    assert expected in message, message
    assert info.value.key == key


def test_bad_override_is_marked(ws: Path) -> None:
    with pytest.raises(CosmosError, match=r"spec\.json: key 'depth\.control_weight': .*1\.5.*\(from --set\)"):
        load_specs(write(ws, "spec.json", minimal()), {"depth.control_weight": 1.5})
    with pytest.raises(CosmosError, match=r"key '--set': expected KEY=VALUE"):
        parse_set_options(["seed"])


def test_invalid_json_names_line_and_column(ws: Path) -> None:
    path = write(ws, "spec.json", '{\n  "prompt": "a",\n  "seed": 1 2\n}')
    with pytest.raises(CosmosError, match=r"spec\.json: invalid JSON at line 3, column 13: Expecting ','"):
        load_specs(path)
    jsonl = write(ws, "b.jsonl", json.dumps(minimal()) + '\n{"seed": }\n')
    with pytest.raises(CosmosError, match=r"b\.jsonl: invalid JSON at line 2, column 10"):
        load_specs(jsonl)


def test_jsonl_errors_name_the_line(ws: Path) -> None:
    empty = write(ws, "e.jsonl", json.dumps(minimal()) + "\n\n" + json.dumps(minimal(name="x")) + "\n")
    with pytest.raises(CosmosError, match=r"e\.jsonl: line 2 is empty"):
        load_specs(empty)
    bad = write(ws, "k.jsonl", json.dumps(minimal()) + "\n" + json.dumps(minimal(seed=1.5)) + "\n")
    with pytest.raises(CosmosError, match=r"k\.jsonl:2: key 'seed': expected an integer, got 1\.5"):
        load_specs(bad)


def test_duplicate_names(ws: Path) -> None:
    dup = write(ws, "d.jsonl", "\n".join(json.dumps(minimal(name="a", seed=i)) for i in range(3)))
    with pytest.raises(
        CosmosError, match=r"d\.jsonl:2: key 'name': duplicate name 'a' \(first at .*d\.jsonl:1\)"
    ):
        load_specs(dup)
    one = write(ws, "one.json", minimal(name="a"))
    two = write(ws, "two.jsonl", json.dumps(minimal(name="b")) + "\n" + json.dumps(minimal(name="a")))
    with pytest.raises(CosmosError, match=r"two\.jsonl:2: key 'name': duplicate name 'a' in the batch"):
        load_batch([one, two])
    three = write(ws, "three.json", minimal(name="c"))
    assert [s.name for s in load_batch([one, three])] == ["a", "c"]
    assert [s.name for s in load_batch([one, three], name="c")] == ["c"]
    with pytest.raises(CosmosError, match=r"one\.json: key 'name': no sample named 'zz'"):
        load_specs(one, name="zz")


def test_file_level_errors(ws: Path) -> None:
    with pytest.raises(CosmosError, match=r"none\.json: spec file not found"):
        load_specs(ws / "none.json")
    with pytest.raises(CosmosError, match=r"spec\.yaml: unsupported file extension"):
        load_specs(write(ws, "spec.yaml", "{}"))
    with pytest.raises(
        CosmosError, match=r"nc\.json: no control block: give at least one of edge, vis, depth, seg"
    ):
        load_specs(write(ws, "nc.json", minimal(edge=None)))
    with pytest.raises(
        CosmosError, match=r"arr\.json: expected a JSON object at the top level, got an array"
    ):
        load_specs(write(ws, "arr.json", "[1]"))
    with pytest.raises(CosmosError, match=r"dk\.json: key 'seed': the key appears twice"):
        load_specs(write(ws, "dk.json", '{"seed": 1, "seed": 2}'))
