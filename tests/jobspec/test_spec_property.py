"""`validate` holds every rule `infer` enforces: any spec that `validate` accepts runs `infer --tiny` to the
end, or stops with the project's one-line error (exit 2), never another exception.

Hypothesis draws specs whose every key is a valid value, a boundary, or a hostile one (wrong types, NaN,
huge numbers, odd names). Frame counts stay small and steps few so each accepted spec runs in seconds on
the tiny model; the slow variant draws more examples and longer chunks.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_specs
from cosmos_t2.video import write_video

FRAMES = 9
JUNK = st.sampled_from([None, "x", "", [], {}, True, -1, 0.5, float("nan"), float("inf"), 10**30])


def mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid 15 times in 16: a spec has ~15 keys, so about a third of the drawn specs pass `validate`
    and reach `infer`, the rest have one or two hostile values."""
    return st.integers(0, 15).flatmap(lambda i: bad if i == 0 else valid)


def key_values(chunks: list[int]) -> dict[str, st.SearchStrategy[Any]]:
    """For each optional spec key: the values a user might write, good and bad."""
    return {
        "negative_prompt": mostly(st.text(max_size=20), JUNK),
        "seed": mostly(st.integers(-(2**70), 2**70), JUNK),
        "guidance": mostly(st.integers(0, 7), st.sampled_from([-1, 8, 3.5]) | JUNK),
        "num_video_frames_per_chunk": mostly(st.sampled_from(chunks), JUNK),
        "num_conditional_frames": mostly(st.integers(0, 2), st.sampled_from([-1, 3]) | JUNK),
        "max_frames": mostly(st.integers(1, FRAMES + 3), st.just(0) | JUNK),
        "sigma_max": mostly(st.sampled_from([0, 1, 80, 200, "80"]), st.sampled_from([201, "high"]) | JUNK),
        "resolution": mostly(
            st.sampled_from(["720", "480", "tiny", 480, 720]), st.sampled_from(["1080", 1080])
        ),
        "keep_input_resolution": mostly(st.booleans(), JUNK),
        "show_control_condition": mostly(st.booleans(), JUNK),
        "show_input": mostly(st.booleans(), JUNK),
        "guided_generation_step_threshold": mostly(st.integers(0, 3), st.just(-1) | JUNK),
    }


def control_blocks() -> st.SearchStrategy[dict[str, Any]]:
    weight = mostly(st.floats(0, 1), st.sampled_from([-0.5, 1.5, float("nan")]) | JUNK)
    preset = mostly(st.sampled_from(["very_low", "low", "medium", "high", "very_high"]), st.just("max"))
    edge = st.fixed_dictionaries({}, optional={"control_weight": weight, "preset_edge_threshold": preset})
    vis = st.fixed_dictionaries({}, optional={"control_weight": weight, "preset_blur_strength": preset})
    # edge always drawn (a spec without any block is refused, which tells little), vis now and then
    return st.fixed_dictionaries({"edge": mostly(edge, JUNK)}, optional={"vis": mostly(vis, JUNK)})


def specs(chunks: list[int]) -> st.SearchStrategy[dict[str, Any]]:
    names = mostly(
        st.sampled_from(["job", "名前", "-x", "a b", "é" * 100]),
        st.text(max_size=30) | st.sampled_from(["run_" + "0" * 30, "é" * 101, "a\tb", "..", " "]),
    )
    prompts = mostly(st.just("a robot arm"), st.text(max_size=40))
    # num_steps is always drawn: left out it is 35, and a few steps keep each run to seconds
    steps = mostly(st.integers(1, 2), st.sampled_from([0, 1001, 10**9, "2"]) | JUNK)
    required = {"name": names, "prompt": prompts, "num_steps": steps}
    top = st.fixed_dictionaries(required, optional=key_values(chunks))
    return st.tuples(top, control_blocks()).map(lambda parts: parts[0] | parts[1])


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prop") / "input.mp4"
    frames = np.random.RandomState(1).randint(0, 255, (FRAMES, 48, 64, 3)).astype(np.uint8)
    write_video(path, frames, 8.0)
    return path


def check_accepted_spec_runs_or_fails_cleanly(
    data: dict[str, Any], video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps(data | {"video_path": str(video)}))
        try:
            load_specs(spec)
        except CosmosError:
            event("refused by validate")
            return  # refused by validate: test_fault_catalog checks that refusal is one clean line
        capsys.readouterr()
        code, out, err = run_cli(
            ["infer", str(spec), "-o", str(Path(tmp) / "out"), "--tiny", "--quiet"], capsys
        )
        lines = [line for line in err.splitlines() if line.strip()]
        event(f"infer exit {code}")
        assert code in (0, 2), (data, err[-3000:])
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("error: "), (data, err[-3000:])
        else:
            written = out.splitlines()
            assert len(written) == 2 and all(Path(p).is_file() for p in written), (data, out)


@settings(
    max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=specs(chunks=[1, 5, 9, 10, 4001]))
def test_any_spec_validate_accepts_runs_or_fails_in_one_line(
    data: dict[str, Any], video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_accepted_spec_runs_or_fails_cleanly(data, video, capsys)


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=specs(chunks=[1, 5, 9, 13, 17, 93, 509]))
def test_any_spec_validate_accepts_runs_or_fails_in_one_line_more(
    data: dict[str, Any], video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_accepted_spec_runs_or_fails_cleanly(data, video, capsys)
