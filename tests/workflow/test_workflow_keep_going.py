"""A sweep survives a bad sample: with --keep-going the other jobs finish, and the report (written by the
Snakefile's `onerror` handler) lists the failed job with the rule, its one-line error and its log.

One small real run (tiny model, CPU, 5 frames, 1 step): the bad sample passes `validate` (its control
video exists) and fails in `infer`, whose check finds the control one frame short.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from _snakemake import snakemake_command

from cosmos_t2.video import write_video

REPO = Path(__file__).resolve().parents[2]


def test_keep_going_finishes_the_others_and_the_report_lists_the_failure(tmp_path: Path) -> None:
    frames = np.random.RandomState(0).randint(0, 255, (5, 64, 96, 3)).astype(np.uint8)
    write_video(tmp_path / "input.mp4", frames, 8.0)
    write_video(tmp_path / "short_edge.mp4", frames[:4], 8.0)
    base = {"prompt": "a robot arm", "video_path": "input.mp4", "num_video_frames_per_chunk": 5}
    (tmp_path / "good.json").write_text(json.dumps(base | {"name": "good", "edge": {}}))
    bad = base | {"name": "bad", "edge": {"control_path": "short_edge.mp4"}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        "specs: [good.json, bad.json]\ngrid: {num_steps: [1]}\ntiny: true\ndevice: cpu\nresults: results\n"
    )
    cmd = snakemake_command()
    proc = subprocess.run([*cmd, "--keep-going"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]  # the sweep did fail: Snakemake says so

    run_dir = tmp_path / "results" / "cpu-local"
    jobs = {j["name"]: j for j in json.loads((run_dir / "manifest.json").read_text())["jobs"]}
    assert (run_dir / jobs["good"]["paths"]["video"]).stat().st_size > 0  # the other job finished
    assert not (run_dir / jobs["bad"]["paths"]["video"]).exists()
    log = run_dir / jobs["bad"]["logs"]["diffuse"]
    error = log.read_text().strip().splitlines()[-1]
    assert error.startswith("error: ") and "short_edge.mp4" in error and "Traceback" not in log.read_text()

    html = (tmp_path / "results" / "report.html").read_text()
    assert "Failed in rule diffuse" in html and "short_edge.mp4" in html
    assert jobs["bad"]["logs"]["diffuse"] in html  # linked to its log
    assert html.count('src="data:video/mp4;base64,') == 1  # the good job's preview
