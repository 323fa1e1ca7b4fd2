"""The README's "same bytes" promises, each where it holds (cosmos_t2.reproducible, `cosmos-t2 reproduce`).

`make test` runs this file twice, with OMP_NUM_THREADS=1 (conftest's default) and 2: the in-process parts
must not depend on the thread count either. The golden digests were recorded on a 2-core AVX-512 Xeon
(2026-12-06, av 18.1.0) and a 2-core AVX-512 AMD EPYC (2026-12-08, av 18.1.1); they are keyed by the library versions that decide the bytes, so another CPU or core count
with the same wheels must give them (x86-64 with SSE4.2 for the encoder, AVX2 for the job), and a test is
skipped, saying why, only where the wheels differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from safetensors.torch import save_file

from cosmos_t2.job.reproduce import DIFFERENT_EXPLAINED, IDENTICAL
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import VAEConfig, build_vae
from cosmos_t2.reproducible import (
    CPU_PINS,
    X264_THREADS,
    asks_for_cpu,
    cpu_flags,
    is_x86_64,
    pin_cpu_numerics,
    sees_nvidia_gpu,
)
from cosmos_t2.runtime.build import randomize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from encode_check import encode_sha256, moving_gradient  # noqa: E402

pytestmark = pytest.mark.determinism

# sha256 of the 24-frame 64x112 moving gradient (scripts/encode_check.py), by `av` version.
GRADIENT_SHA256 = {
    "18.1.0": "4d5f4f91d1e777d7e0f3702123e73972b2e202aaea5f875e9d626b8b5ed752f8",
    "18.1.1": "567b9d56f8cf1152aec526f241145af696d18c1b099b887cb4304ccdad07a5b2",  # 2026-12-08, Zen 4 AVX-512
}
# The tiny robot job below (examples/robot/edge.json, 2 steps): its sidecar's identities, by (torch, av),
# recorded on an AMD EPYC (AVX2, 2 cores); the MKL COMPATIBLE path makes them the CPU vendor's too.
ROBOT_IDENTITY = {
    ("2.13.0+cpu", "18.1.0"): {
        "latents_sha256": "43501d04ab9e6e92738ba97caa61d3cc25433b44fec4439b9a57f3abe788eec8",
        "video_sha256": "e7a533463d3e15eb44effc3b39d4f8e3983be072de96b44904b3518db81fce8f",
        "yuv_sha256": "23753bdd38bf1c5b74002b95f7a1460b2169a72e426d696102a9d7794eecc1fe",
    },
    # 2026-12-08, a 2-core AMD EPYC with AVX-512 (Zen 4): the latents and the decoded frames are 18.1.0's on
    # AVX2; only the container's bytes follow the av wheel
    ("2.13.0+cpu", "18.1.1"): {
        "latents_sha256": "43501d04ab9e6e92738ba97caa61d3cc25433b44fec4439b9a57f3abe788eec8",
        "video_sha256": "155ea80d29c4ab0ff6c493f15420ec4a8e7f2f28f6fe77ccbb1385c6985974e1",
        "yuv_sha256": "23753bdd38bf1c5b74002b95f7a1460b2169a72e426d696102a9d7794eecc1fe",
    },
}
ROBOT_JOB = ["infer", str(REPO / "examples/robot/edge.json"), "--tiny", "--device", "cpu", "--quiet",
             "--set", "num_steps=2"]  # fmt: skip

x86_64_only = pytest.mark.skipif(
    not (is_x86_64() and {"sse4_2", "avx2"} <= cpu_flags()),
    reason="the same-bytes promise is for x86-64 CPUs with SSE4.2 and AVX2",
)


def cosmos_t2(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A `cosmos-t2` process with `env` on top of this one's (where the CPU pins, set by conftest, are
    dropped, so the process sets them itself as a user's would)."""
    base = {k: v for k, v in os.environ.items() if k not in CPU_PINS}
    pythonpath = os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "cosmos_t2.cli", *args]
    return subprocess.run(
        command, env={**base, "PYTHONPATH": pythonpath, **env}, cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def identity(folder: Path, name: str = "robot_edge") -> dict[str, str]:
    return json.loads((folder / f"{name}.json").read_text())["identity"]


def test_a_moving_gradient_encodes_to_the_same_bytes_in_this_process_and_in_two_others(
    tmp_path: Path,
) -> None:
    here = [encode_sha256(moving_gradient(24, 64, 112), tmp_path) for _ in range(4)]
    assert len(set(here)) == 1, "the same frames encoded differently in one process"
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts/encode_check.py")], capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sha256"] == here


@x86_64_only
def test_the_gradient_encodes_to_the_recorded_bytes_on_any_x86_64(tmp_path: Path) -> None:
    if av.__version__ not in GRADIENT_SHA256:
        pytest.skip(f"no digest recorded for av {av.__version__}: record one with scripts/encode_check.py")
    digest = encode_sha256(moving_gradient(24, 64, 112), tmp_path)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "sse4")))
    assert digest == GRADIENT_SHA256[av.__version__], f"this CPU ({os.cpu_count()} cores, {flags}) differs"


def test_x264_runs_with_the_fixed_thread_count(tmp_path: Path) -> None:
    """x264 writes its settings into the stream (an SEI message): the thread count is ours, not 1.5 x cores."""
    encode_sha256(moving_gradient(9, 64, 112), tmp_path)
    settings = re.search(rb"x264 - core \d+ .*? options: (.*?)\x00", (tmp_path / "check.mp4").read_bytes())
    assert settings is not None
    assert re.search(rb"(?:^| )threads=(\d+) ", settings.group(1)).group(1) == str(X264_THREADS).encode()


def test_the_cpu_pins_keep_what_the_user_set() -> None:
    environ = {"MKL_CBWR": "AVX2,STRICT"}
    pins = pin_cpu_numerics(environ)
    assert environ["MKL_CBWR"] == "AVX2,STRICT" and pins.get("MKL_CBWR") == "AVX2,STRICT"
    if is_x86_64():
        assert environ["MKL_NUM_THREADS"] == "1"
    if is_x86_64() and "avx2" in cpu_flags():
        assert environ["ATEN_CPU_CAPABILITY"] == "avx2" and environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_a_gpu_job_keeps_mkl_threaded_and_a_cpu_job_is_pinned() -> None:
    """The pins would slow a GPU job's CPU-side GEMMs (a text encoder that did not fit): only CPU jobs get them."""
    assert pin_cpu_numerics({}, cpu_job=False) == {}
    assert asks_for_cpu(["infer", "a.json", "--device", "cpu"]) and asks_for_cpu(["x", "--device=cpu"])
    assert not asks_for_cpu(["infer", "a.json", "--device", "cuda:1"]) and not asks_for_cpu(["cpu"])
    assert not sees_nvidia_gpu({"CUDA_VISIBLE_DEVICES": ""})
    assert not sees_nvidia_gpu({"CUDA_VISIBLE_DEVICES": "-1"})


@pytest.fixture(scope="module")
def robot_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny robot job (real footage) in a process of 1 thread, one of 2, and through the server."""
    folder = tmp_path_factory.mktemp("robot")
    for out, threads in (("one", "1"), ("two", "2")):
        done = cosmos_t2([*ROBOT_JOB, "-o", out], folder, OMP_NUM_THREADS=threads)
        assert done.returncode == 0, done.stderr
    serve_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ct2-r{os.getpid()}"  # a socket path stays short
    try:
        done = cosmos_t2([*ROBOT_JOB, "-o", "served", "--server"], folder, COSMOS_T2_SERVE_DIR=str(serve_dir))
        assert done.returncode == 0, done.stderr
    finally:
        cosmos_t2(["serve", "--stop"], folder, COSMOS_T2_SERVE_DIR=str(serve_dir))
    return folder


def test_the_same_cpu_job_writes_the_same_mp4_whatever_the_threads_and_via_the_server(
    robot_runs: Path,
) -> None:
    one, two, served = (robot_runs / d / "robot_edge.mp4" for d in ("one", "two", "served"))
    assert one.read_bytes() == two.read_bytes(), "1 and 2 threads wrote different mp4s"
    assert one.read_bytes() == served.read_bytes(), "the server wrote another mp4 than a process of its own"
    assert identity(robot_runs / "one") == identity(robot_runs / "two") == identity(robot_runs / "served")
    assert identity(robot_runs / "one")["video_sha256"] == hashlib.sha256(one.read_bytes()).hexdigest()


def top_level_boxes(mp4: Path) -> list[str]:
    """The ISO-BMFF boxes at the top level of an mp4, in file order."""
    data, boxes, at = mp4.read_bytes(), [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8].decode("latin-1")
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        at += size
    return boxes


def test_the_final_mp4_is_faststart(robot_runs: Path) -> None:
    """The index (moov) before the frames (mdat): a browser plays the report's <video> before it has it all."""
    boxes = top_level_boxes(robot_runs / "one" / "robot_edge.mp4")
    assert boxes.index("moov") < boxes.index("mdat"), boxes


@x86_64_only
def test_the_cpu_job_gives_the_recorded_bytes_on_any_x86_64(robot_runs: Path) -> None:
    key = (torch.__version__, av.__version__)
    if key not in ROBOT_IDENTITY:
        pytest.skip(f"no identities recorded for torch {key[0]} with av {key[1]}")
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "sse4")))
    assert identity(robot_runs / "one") == ROBOT_IDENTITY[key], f"this CPU ({os.cpu_count()} cores, {flags})"


def test_reproduce_says_identical_for_a_finished_cpu_job(robot_runs: Path) -> None:
    done = cosmos_t2(["reproduce", "one/robot_edge.json", "-o", "again"], robot_runs)
    assert done.returncode == IDENTICAL, done.stdout + done.stderr
    assert done.stdout.startswith("identical: latents, video, yuv match the record")
    assert (robot_runs / "again" / "robot_edge.mp4").read_bytes() == (
        robot_runs / "one/robot_edge.mp4"
    ).read_bytes()


def test_reproduce_reruns_a_sidecar_written_before_the_record_was_versioned(robot_runs: Path) -> None:
    old = robot_runs / "unversioned"
    old.mkdir()
    record = json.loads((robot_runs / "one/robot_edge.json").read_text())
    del record["schema_version"]  # a version-1 sidecar: `run` and `identity` as today, no version
    (old / "robot_edge.json").write_text(json.dumps(record))
    shutil.copy(robot_runs / "one/robot_edge.mp4", old / "robot_edge.mp4")
    done = cosmos_t2(["reproduce", "unversioned/robot_edge.json", "-o", "again_unversioned"], robot_runs)
    assert done.returncode == IDENTICAL, done.stdout + done.stderr
    assert done.stdout.startswith("identical: latents, video, yuv match the record")


def _tiny_model_dir(folder: Path, seed: int) -> None:
    net = TransferNet(TransferConfig.tiny())
    randomize(net, seed)
    folder.mkdir(exist_ok=True)
    save_file(net.state_dict(), folder / "edge.safetensors")
    vae = build_vae(VAEConfig.tiny(), dtype=torch.float32, seed=0)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, folder / "tokenizer.safetensors")


def test_reproduce_names_a_replaced_model_file(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _tiny_model_dir(models, seed=1)
    job = [*ROBOT_JOB, "--model-dir", str(models), "--latents-only", "-o", "first"]
    done = cosmos_t2(job, tmp_path)
    assert done.returncode == 0, done.stderr
    _tiny_model_dir(models, seed=2)  # someone replaced the checkpoint in place
    done = cosmos_t2(["reproduce", "first/robot_edge.json", "-o", "again"], tmp_path)
    assert done.returncode == DIFFERENT_EXPLAINED, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("different: latents differ from the record")
    assert any(re.match(r"  latents: largest absolute difference [0-9.e+-]+$", line) for line in lines)
    assert any(line.startswith("  model file edge: sha256 ") for line in lines), done.stdout


def test_a_safetensors_file_with_metadata_has_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    """safetensors keeps metadata in a hash map (another key order each process): embedding files and
    converted checkpoints go through `stable_safetensors`, whose files repeat byte for byte."""
    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from cosmos_t2 import stable_safetensors\n"
        "meta = {k: str(i) for i, k in enumerate(['model', 'prompt', 'length', 'dtype', 'encoder', 'layers'])}\n"
        "stable_safetensors.save_file({'b': torch.arange(6.0), 'a': torch.ones(2, 3)}, Path(sys.argv[1]), meta)\n"
    )
    files = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for f in files:
        done = subprocess.run([sys.executable, "-c", script, str(f)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert len({f.read_bytes() for f in files}) == 1
    from safetensors import safe_open

    with safe_open(str(files[0]), "pt") as read:
        assert read.metadata()["layers"] == "5" and torch.equal(read.get_tensor("b"), torch.arange(6.0))
