"""`cosmos-t2 validate` and `cosmos-t2 version` through the real entry point: output, job specs, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _cli import run_cli

from cosmos_t2 import __version__
from cosmos_t2.cli import main
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_specs


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "in.mp4").write_bytes(b"")
    (tmp_path / "edge.mp4").write_bytes(b"")
    return tmp_path


def spec_file(folder: Path, name: str = "spec.json", **extra: Any) -> Path:
    data = {"prompt": "a red car", "video_path": "in.mp4", "edge": {"control_path": "edge.mp4"}} | extra
    path = folder / name
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["version"], capsys)
    assert code == 0 and out.strip() == __version__


def test_validate_prints_resolved_spec_with_overrides(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec_file(ws, depth={"control_weight": 0.9})
    code, out, err = run_cli(
        ["validate", str(path), "--set", "depth.control_weight=0.5", "--set", "seed=7"], capsys
    )
    assert code == 0, err
    resolved = json.loads(out)
    assert resolved["name"] == "spec" and resolved["seed"] == 7
    assert "num_steps" not in resolved  # not given: the model's own count (35, or the distilled model's 4)
    assert resolved["depth"]["control_weight"] == 0.5
    assert resolved["edge"]["control_path"] == str(ws / "edge.mp4")


def test_validate_batch_prints_a_list_and_json_out_needs_one(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = ws / "batch.jsonl"
    batch.write_text(
        "\n".join(
            json.dumps({"name": n, "prompt": "p", "video_path": "in.mp4", "vis": {}}) for n in ("a", "b")
        )
    )
    code, out, _ = run_cli(["validate", str(batch), str(spec_file(ws))], capsys)
    assert code == 0 and [s["name"] for s in json.loads(out)] == ["a", "b", "spec"]

    job = ws / "jobs" / "b.json"
    code, _, err = run_cli(["validate", str(batch), "--json-out", str(job)], capsys)
    assert code == 2 and "batch.jsonl" in err and "pick one with --name" in err and not job.exists()

    code, out, err = run_cli(["validate", str(batch), "--name", "b", "--json-out", str(job)], capsys)
    assert code == 0, err
    assert json.loads(job.read_text()) == json.loads(out)
    assert load_specs(job) == load_specs(batch, name="b")


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        ({"depth": {"control_weight": 1.5}}, "depth.control_weight", "expected a number in [0, 1], got 1.5"),
        ({"edge": {"control_path": "missing.mp4"}}, "edge.control_path", "file not found"),
        ({"resolution": "1080"}, "resolution", "expected one of"),
        ({"colour": "red"}, "colour", "unknown key"),
    ],
)
def test_bad_spec_exits_2_with_one_line(
    ws: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], key: str, expected: str
) -> None:
    path = spec_file(ws, **extra)
    code, out, err = run_cli(["validate", str(path)], capsys)
    assert code == 2 and out == ""
    assert f"{path}: key '{key}': " in err and expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_set_option_exits_2(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["validate", str(spec_file(ws)), "--set", "num_conditional_frames=3"], capsys)
    assert code == 2
    assert "spec.json: key 'num_conditional_frames': expected an integer in [0, 2], got 3 (from --set)" in err


def test_invalid_json_exits_2(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ws / "broken.json"
    path.write_text('{"prompt": "a",\n "seed": }')
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2 and "broken.json: invalid JSON at line 2, column 10" in err


def test_debug_raises(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["cosmos-t2", "--debug", "validate", str(spec_file(ws, seed="x"))])
        with pytest.raises(CosmosError, match="key 'seed'"):
            main()


def test_console_script_subprocess(ws: Path) -> None:
    """The real process: exit code 2, one red line on stderr, no traceback."""
    path = spec_file(ws, prompt_path="prompt.txt")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "cosmos_t2.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: key 'prompt': give either 'prompt' or 'prompt_path', not both" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["infer", "{spec}", "--tiny", "--memory-cap", "nan"], "--memory-cap"),
        (["infer", "{spec}", "--tiny", "--memory-cap", "inf"], "--memory-cap"),
        (["infer", "{spec}", "--tiny", "--memory-cap", "1e400"], "--memory-cap"),  # parses as inf
        (["validate", "{spec}", "--estimate", "--memory-cap", "-1"], "--memory-cap"),
        (["validate", "{spec}", "--estimate", "--gpus", "0"], "--gpus"),
        (["validate", "{spec}", "--estimate", "--gpus", "-2"], "--gpus"),
        (["infer", "{spec}", "--gpus", "0"], "--gpus"),
        (["infer", "{spec}", "--server", "--server-idle", "nan"], "--server-idle"),
        (["infer", "{spec}", "--server", "--server-idle", "0"], "--server-idle"),
        (["infer", "{spec}", "--server", "--server-idle", "-5"], "--server-idle"),
        (["infer", "{spec}", "--server", "--server-idle", "inf"], "--server-idle"),
        (["serve", "--idle-timeout", "nan"], "--idle-timeout"),
        (["bench", "--iters", "0"], "--iters"),
    ],
)
def test_numeric_options_out_of_range_are_one_line_naming_the_option(
    ws: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    spec = spec_file(ws)
    code, out, err = run_cli([a.format(spec=spec) for a in args], capsys)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], err
