"""An eager job's process never imports torch.compile's machinery: torch._dynamo and torch._inductor cost
~2-3 s of every CPU process's start (each sweep job, each render), and only compiled blocks need them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The job a sweep's diffuse rule runs on CPU (prompt embeddings given, as the prompt rule's; latents only), then the
# encode rule's render of its latents, in one interpreter; then which compile modules got imported.
EAGER_JOBS = """
import sys
import torch
from cosmos_t2.bench.e2e import write_prompt_embeddings
from cosmos_t2.cli import app
def run(*args):
    try:
        app([*args], standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
out = sys.argv[1]
spec = "examples/robot/edge.json"
write_prompt_embeddings(__import__("pathlib").Path(out, "p.safetensors"), tiny=True, dtype=torch.float32)
run("infer", spec, "-o", out, "--tiny", "--device", "cpu", "--quiet", "--latents-only", "--set", "num_steps=1",
    "--set", "num_video_frames_per_chunk=5", "--prompt-embeddings", f"{out}/p.safetensors")
run("render", f"{out}/robot_edge.latents.safetensors", "-o", f"{out}/robot_edge.mp4", "--tiny", "--device", "cpu")
print(sorted(m for m in sys.modules if m in ("torch._dynamo", "torch._inductor", "torch._inductor.config")))
"""


def test_an_eager_cpu_job_and_its_render_import_neither_dynamo_nor_inductor(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EAGER_JOBS, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "robot_edge.mp4").stat().st_size > 0
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]
