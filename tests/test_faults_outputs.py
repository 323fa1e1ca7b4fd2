"""Faults around outputs: nothing half-written survives, the destination is checked before the work, a
non-finite latent stops the job, and every failure is one line that names the file or key.

Every CLI case asserts exit code 2, one line on stderr (no traceback) naming the path or key, hints only to
options the command has, and no file under a final name. The injection cases make the k-th write step fail
(os.replace, opening the muxer, a packet write) for every k of a real run; the SIGKILL case kills a real
`cosmos-t2 infer --tiny` process at seeded random moments.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from _cli import run_cli, without_progress
from typer.main import get_command

import cosmos_t2.model.checkpoint as checkpoint
from cosmos_t2.cli import app
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import load_vae
from cosmos_t2.runtime.build import TINY_LABEL
from cosmos_t2.sampling.base import ChunkConditioning
from cosmos_t2.sampling.distilled import DistilledSampler
from cosmos_t2.sampling.guard import NonFiniteLatent, guarded_sample
from cosmos_t2.sampling.unipc import UniPCSampler
from cosmos_t2.video import decode_to_model, read_video, write_video

NUM_FRAMES, SIZE = 5, 64
FAST = ["--set", "num_steps=2", "--set", "num_video_frames_per_chunk=5", "--device", "cpu", "--quiet"]
JOB_FILES = ["tiny.json", "tiny.mp4"]


# --- helpers ---------------------------------------------------------------------------------------------


def final_files(folder: Path) -> list[str]:
    """Files under their final names (temp files are hidden: `.name.*`)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def options_of(command: str) -> set[str]:
    params = get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {opt for p in params for opt in (*p.opts, *p.secondary_opts)}


def assert_fault(code: int, err: str, command: str, mentions: str, folder: Path | None = None) -> str:
    """Exit code 2, one `error:` line naming `mentions`, hints only to options of `command`, and nothing
    under a final name in `folder`."""
    lines = without_progress(err)  # the error is the one line left, and the last
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert err.strip().splitlines()[-1] == lines[0], err
    assert "Traceback" not in err and "weights_only" not in err
    assert mentions in lines[0], lines[0]
    for hint in re.findall(r"(?<![\w-])--[a-z][a-z-]*", lines[0]):
        assert hint in options_of(command), f"{command} has no {hint}: {lines[0]}"
    if folder is not None:
        assert final_files(folder) == [], final_files(folder)
    return lines[0]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("job")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    write_video(folder / "input.mkv", frames, 12.0, lossless=True)
    (folder / "tiny.json").write_text(
        json.dumps({"name": "tiny", "prompt": "noise", "video_path": "input.mkv", "edge": {}})
    )
    return folder / "tiny.json"


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a command gets as far as building a model (checks must come first)."""

    def built(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was built before the destination was checked")

    monkeypatch.setattr("cosmos_t2.job.load.prompt_embeddings", built)
    for name in ("net", "vae", "text_encoder"):
        monkeypatch.setattr(f"cosmos_t2.runtime.pool.ModelPool.{name}", built)


def fail_at(
    monkeypatch: pytest.MonkeyPatch, target: str, k: int, wrap: Callable[..., Any] | None = None
) -> list[int]:
    """Make the k-th call (0-based) of `target` (module.attr) fail with ENOSPC, or `wrap` its result;
    returns the call counter (count[0])."""
    module_name, attr = target.rsplit(".", 1)
    module = sys.modules[module_name]
    real = getattr(module, attr)
    count = [0]

    def patched(*args: Any, **kwargs: Any) -> Any:
        i = count[0]
        count[0] += 1
        if i == k:
            if wrap is not None:
                return wrap(real(*args, **kwargs))
            raise OSError(errno.ENOSPC, "No space left on device", str(args[-1]) if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, patched)
    return count


class _FailingMuxer:
    """An output container whose first packet write fails, as a full disk does mid-file."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def __enter__(self) -> _FailingMuxer:
        self._container.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._container.__exit__(*exc)

    def mux(self, packets: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", self._container.name)


def write_opens(monkeypatch: pytest.MonkeyPatch, k: int | None, *, at_open: bool) -> list[int]:
    """Count (and fail the k-th of) the muxers opened for writing: at open, or at the first packet."""
    real = av.open
    count = [0]

    def patched(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "w":
            return real(file, mode, *args, **kwargs)
        i = count[0]
        count[0] += 1
        if i == k and at_open:
            raise OSError(errno.EIO, "Input/output error", str(file))
        container = real(file, mode, *args, **kwargs)
        return _FailingMuxer(container) if i == k else container

    monkeypatch.setattr(av, "open", patched)
    return count


def count_calls(monkeypatch: pytest.MonkeyPatch, run: Callable[[], None]) -> tuple[int, int]:
    """(os.replace calls, muxers opened for writing) of one successful run."""
    with monkeypatch.context() as mp:
        replaces = fail_at(mp, "os.replace", -1)
        opens = write_opens(mp, None, at_open=True)
        run()
    return replaces[0], opens[0]


def check_every_write_step(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    args: Callable[[Path], list[str]],
) -> int:
    """Run `command` once to count its write steps, then once per step with that step failing."""

    def ok() -> None:
        assert run_cli(args(tmp_path / "reference"), capsys)[0] == 0

    replaces, opens = count_calls(monkeypatch, ok)
    assert replaces >= 1
    cases = [("os.replace", k) for k in range(replaces)]
    cases += [(kind, k) for kind in ("open", "mux") for k in range(opens)]
    for kind, k in cases:
        folder = tmp_path / f"{kind}_{k}"
        with monkeypatch.context() as mp:
            if kind == "os.replace":
                fail_at(mp, "os.replace", k)
            else:
                write_opens(mp, k, at_open=kind == "open")
            code, _, err = run_cli(args(folder), capsys)
        assert_fault(code, err, command, str(folder), folder)
    return len(cases)


# --- 1. outputs appear whole or not at all --------------------------------------------------------------


def test_infer_leaves_no_final_file_when_any_write_step_fails(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    n = check_every_write_step(
        monkeypatch,
        capsys,
        tmp_path,
        "infer",
        lambda out: ["infer", str(job), "-o", str(out), "--tiny", *FAST],
    )
    assert n >= 7  # encode, label, sidecar, two publishing renames; two muxers opened
    assert final_files(tmp_path / "reference") == JOB_FILES


def test_latents_only_and_render_leave_no_final_file_when_a_write_step_fails(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    latents_dir = tmp_path / "latents"
    for k in range(4):  # save to temp, sidecar to temp, publish latents, publish sidecar
        with monkeypatch.context() as mp:
            fail_at(mp, "os.replace", k)
            code, _, err = run_cli(
                ["infer", str(job), "-o", str(latents_dir), "--tiny", "--latents-only", *FAST], capsys
            )
        assert_fault(code, err, "infer", str(latents_dir), latents_dir)
    assert (
        run_cli(["infer", str(job), "-o", str(latents_dir), "--tiny", "--latents-only", *FAST], capsys)[0]
        == 0
    )
    assert final_files(latents_dir) == ["tiny.json", "tiny.latents.safetensors"]
    latents = latents_dir / "tiny.latents.safetensors"
    check_every_write_step(
        monkeypatch, capsys, tmp_path / "render", "render",
        lambda out: ["render", str(latents), "-o", str(out / "tiny.mp4"), "--tiny", "--device", "cpu"],
    )  # fmt: skip


def test_decode_leaves_no_final_file_when_a_write_step_fails(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_every_write_step(
        monkeypatch, capsys, tmp_path, "decode", lambda out: ["decode", str(job), "-o", str(out), "--tiny"]
    )


def test_controls_leave_no_final_file_when_a_write_step_fails(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_every_write_step(
        monkeypatch, capsys, tmp_path, "controls",
        lambda out: ["controls", str(job), "-o", str(out), "--tiny", "--device", "cpu"],
    )  # fmt: skip


def test_masks_leave_no_final_file_when_a_write_step_fails(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shapes = {"normalized": True, "shapes": [{"box": [0.0, 0.0, 0.5, 0.5]}]}
    (job.parent / "box.json").write_text(json.dumps(shapes))
    spec = {**json.loads(job.read_text()), "edge": {"mask_path": "box.json"}}
    (job.parent / "masked.json").write_text(json.dumps(spec))
    n = check_every_write_step(
        monkeypatch, capsys, tmp_path, "masks",
        lambda out: ["masks", str(job.parent / "masked.json"), "-o", str(out), "--tiny", "--device", "cpu"],
    )  # fmt: skip
    assert n >= 5 and final_files(tmp_path / "reference") == [
        "edge_mask.json",
        "edge_mask.mkv",
        "edge_mask.mp4",
    ]


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("validate", lambda job, out: ["validate", str(job), "--json-out", str(out / "job.json")]),
        (
            "encode-prompt",
            lambda job, out: [
                "encode-prompt",
                str(job),
                "-o",
                str(out / "p.safetensors"),
                "--tiny",
                "--no-cache",
            ],
        ),
    ],
)
def test_one_file_commands_leave_no_final_file_when_the_write_fails(
    job: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    args: Callable[[Path, Path], list[str]],
) -> None:
    check_every_write_step(monkeypatch, capsys, tmp_path, command, lambda out: args(job, out))


def test_a_failed_rerun_does_not_leave_the_old_sidecar_beside_a_new_video(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli(["infer", str(job), "-o", str(out), "--tiny", *FAST], capsys)[0] == 0
    replaces, _ = count_calls(
        monkeypatch, lambda: run_cli(["infer", str(job), "-o", str(out), "--tiny", *FAST])
    )
    with monkeypatch.context() as mp:  # the last rename (the sidecar's) fails
        fail_at(mp, "os.replace", replaces - 1)
        code, _, err = run_cli(["infer", str(job), "-o", str(out), "--tiny", *FAST], capsys)
    assert_fault(code, err, "infer", "tiny.json", out)


def _complete_or_absent(out: Path) -> bool:
    """True when the job's files are all there and valid; False when none is; fails on anything between."""
    names = final_files(out)
    if not names:
        return False
    assert names == JOB_FILES, names
    record = json.loads((out / "tiny.json").read_text())
    assert record["outputs"]["video"] == "tiny.mp4"
    assert read_video(out / "tiny.mp4").num_frames == NUM_FRAMES
    with av.open(str(out / "tiny.mp4")) as container:
        assert container.metadata.get("title") == TINY_LABEL
    return True


def _kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], delay: float, limit: float
) -> None:
    """SIGKILL `process` `delay` seconds after `ready()` first holds (polled each millisecond)."""
    deadline = time.perf_counter() + limit
    while not ready() and process.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.001)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.mark.slow  # ~2 min on a loaded 2-core machine; the write-step injection tests above cover each step
def test_sigkill_at_random_moments_leaves_all_files_or_none(job: Path, tmp_path: Path) -> None:
    """Half of the kills at a random moment of the whole run, half at a random moment of the write phase
    (counted from the first temp file in the output folder)."""
    command = [sys.executable, "-m", "cosmos_t2.cli", "infer", str(job), "--tiny", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run([*command, "-o", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    duration = time.perf_counter() - started
    assert _complete_or_absent(tmp_path / "whole")
    write_s = json.loads((tmp_path / "whole" / "tiny.json").read_text())["timings_s"]["write"]
    rng = random.Random(18)
    outcomes = []
    for i in range(8):
        out = tmp_path / f"kill_{i}"
        process = subprocess.Popen(
            [*command, "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if i % 2:
            _kill_when(process, lambda: True, rng.uniform(0.1, 1.0) * duration, 0)
        else:
            writing = lambda out=out: out.is_dir() and any(p.name.startswith(".tiny.") for p in out.iterdir())  # noqa: E731
            _kill_when(process, writing, rng.uniform(0, 1.5 * write_s), 4 * duration)
        outcomes.append(_complete_or_absent(out))
    print("complete after each kill:", outcomes)
    assert False in outcomes  # some kills landed before the outputs were published


# --- 2. the destination is checked before the work ------------------------------------------------------


def test_output_folder_that_is_a_file(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    assert "is a file" in assert_fault(code, err, "infer", str(target))


def test_output_folder_below_a_file(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    assert_fault(code, err, "infer", str(target))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    finally:
        target.chmod(0o755)
    assert "cannot write" in assert_fault(code, err, "infer", str(target), target)


def test_unwritable_output_folder_as_the_file_system_reports_it(
    job: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_models: None,
) -> None:
    """The same as above where the test runs as root: the probe file is refused as on a read-only mount."""

    def refuse(*args: Any, dir: str = "", **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, "Read-only file system", dir)

    monkeypatch.setattr("cosmos_t2.destination.tempfile.mkstemp", refuse)
    target = tmp_path / "ro"
    code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    assert "Read-only file system" in assert_fault(code, err, "infer", str(target), target)
    assert not target.exists()


def test_name_too_long_for_the_file_system(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    # 120 two-byte letters: 244 bytes with .mp4 would fit in 255, not with .latents.safetensors (260)
    name = "é" * 120
    target = tmp_path / "out"
    code, _, err = run_cli(
        ["infer", str(job), "-o", str(target), "--tiny", "--latents-only", "--set", f"name={name}", *FAST],
        capsys,
    )
    assert_fault(code, err, "infer", "name", target)


def test_output_folder_name_too_long(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    target = tmp_path / ("d" * 300)
    code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    assert_fault(code, err, "infer", "d" * 300)
    assert os.listdir(tmp_path) == []


def test_not_enough_free_space_is_found_before_any_model_is_built(
    job: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_models: None,
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "cosmos_t2.destination.shutil.disk_usage", lambda path: usage(10**6, 10**6 - 4096, 4096)
    )
    target = tmp_path / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(target), "--tiny", *FAST], capsys)
    assert "not enough free space" in assert_fault(code, err, "infer", str(target), target)
    assert not target.exists()  # the checks create nothing


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("decode", lambda job, bad: ["decode", str(job), "-o", str(bad), "--tiny"]),
        (
            "encode-prompt",
            lambda job, bad: ["encode-prompt", str(job), "-o", str(bad / "p.safetensors"), "--tiny"],
        ),
        ("validate", lambda job, bad: ["validate", str(job), "--json-out", str(bad / "job.json")]),
        (
            "convert-checkpoint",
            lambda job, bad: ["convert-checkpoint", str(job), str(bad / "x.safetensors"), "--tiny"],
        ),
        ("report", lambda job, bad: ["report", str(job.parent), "-o", str(bad / "report.html")]),
        (
            "bench",
            lambda job, bad: [
                "bench",
                "--preset",
                "tiny",
                "--device",
                "cpu",
                "--json-out",
                str(bad / "b.json"),
            ],
        ),
        ("render", lambda job, bad: ["render", str(job), "-o", str(bad / "x.mp4"), "--tiny"]),
        ("controls", lambda job, bad: ["controls", str(job), "-o", str(bad), "--tiny"]),
        ("masks", lambda job, bad: ["masks", str(job), "-o", str(bad), "--tiny"]),
    ],
)
def test_every_writing_command_checks_its_destination_first(
    job: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    args: Callable[[Path, Path], list[str]],
) -> None:
    bad = tmp_path / "a_file"
    bad.write_text("x")
    code, _, err = run_cli(args(job, bad), capsys)
    assert_fault(code, err, command, str(bad))
    assert bad.read_text() == "x"


@pytest.mark.parametrize(
    "command", ["infer", "render", "encode-prompt", "controls", "masks", "bench", "report"]
)
def test_unknown_device_is_one_line(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    first = {"infer": [str(job), "-o", str(tmp_path)], "render": [str(job), "-o", str(tmp_path / "x.mp4")],
             "encode-prompt": [str(job), "-o", str(tmp_path / "p.safetensors")], "controls": [str(job), "-o", str(tmp_path)],
             "masks": [str(job), "-o", str(tmp_path)], "bench": ["--preset", "tiny"],
             "report": [str(tmp_path), "-o", str(tmp_path / "r.html")]}[command]  # fmt: skip
    code, _, err = run_cli(
        [
            command,
            *first,
            "--device",
            "gpu0",
            *(["--tiny"] if command != "bench" and command != "report" else []),
        ],
        capsys,
    )
    assert_fault(code, err, command, "'gpu0'")
    assert final_files(tmp_path) == []


def test_os_error_during_the_work_is_one_line_naming_the_path(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError the checks could not foresee (the input vanishes, a disk fails) still is one line."""

    def gone(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("cosmos_t2.controls.run.read_video", gone)
    target = tmp_path / "out"
    target.mkdir()
    decode_to_model(job.parent / "input.mkv", target, resolution="tiny")
    code, _, err = run_cli(["controls", str(job), "-o", str(target), "--tiny", "--device", "cpu"], capsys)
    line = assert_fault(code, err, "controls", str(target / "input.mkv"))
    assert "Permission denied" in line


# --- 5. NaN/Inf guard ------------------------------------------------------------------------------------


def _poisoned(k: int, value: float) -> Callable[..., torch.Tensor]:
    """A velocity that is finite except at step k (1-based)."""
    step = [0]

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        step[0] += 1
        v = torch.zeros((2 if guided else 1, *x.shape))
        return v.fill_(value) if step[0] == k else v

    return velocity


@pytest.mark.parametrize("sampler", [UniPCSampler(num_steps=5, guidance=3.0), DistilledSampler(num_steps=4)])
@pytest.mark.parametrize("sync_each_step", [True, False])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_velocity_stops_the_chunk_at_its_step(
    sampler: Any, sync_each_step: bool, value: float
) -> None:
    cond = ChunkConditioning(noise=torch.randn(1, 4, 2, 4, 4))
    for k in range(1, sampler.num_steps + 1):
        with pytest.raises(NonFiniteLatent) as info:
            guarded_sample(
                sampler,
                _poisoned(k, value),
                cond,
                chunk=1,
                num_chunks=3,
                sync_each_step=sync_each_step,
                file="job",
            )
        assert (info.value.chunk, info.value.step) == (2, k)
        assert f"step {k} of {sampler.num_steps} in chunk 2 of 3" in str(info.value)
    clean = guarded_sample(sampler, _poisoned(0, 0.0), cond, chunk=0, num_chunks=1)
    assert torch.isfinite(clean).all()


def test_a_network_that_returns_nan_writes_no_video(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = TransferNet.forward
    calls = [0]

    def forward(self: TransferNet, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls[0] += 1
        out = real(self, *args, **kwargs)
        return out * float("nan") if calls[0] > calls_per_step else out

    # How many network calls a step makes (CFG may batch its two passes): count one clean step first.
    calls_per_step = 10**9
    monkeypatch.setattr(TransferNet, "forward", forward)
    assert (
        run_cli(
            ["infer", str(job), "-o", str(tmp_path / "ok"), "--tiny", *FAST, "--set", "num_steps=1"], capsys
        )[0]
        == 0
    )
    calls_per_step, calls[0] = calls[0], 0
    out = tmp_path / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(out), "--tiny", *FAST], capsys)
    assert "step 2 of 2 in chunk 1 of 1" in assert_fault(code, err, "infer", "tiny", out)
    assert not out.exists()


# --- 7. messages ----------------------------------------------------------------------------------------


def test_infer_writes_to_the_specs_output_dir_without_o(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = json.loads(job.read_text())
    folder = tmp_path / "job"
    folder.mkdir()
    shutil.copy(job.parent / "input.mkv", folder / "input.mkv")
    (folder / "tiny.json").write_text(json.dumps({**spec, "output_dir": "outputs/tiny"}))
    code, out, err = run_cli(["infer", str(folder / "tiny.json"), "--tiny", *FAST], capsys)
    assert code == 0, err
    # relative to the spec's folder, as every path in a spec
    assert final_files(folder / "outputs" / "tiny") == JOB_FILES
    assert str(folder / "outputs" / "tiny" / "tiny.mp4") in out


def test_infer_without_o_or_output_dir_is_one_line(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["infer", str(job), "--tiny", *FAST], capsys)
    assert "output_dir" in assert_fault(code, err, "infer", str(job))


def test_hints_name_options_of_the_command_that_prints_them(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "infer": ["infer", str(job), "-o", str(tmp_path / "a"), *FAST],  # no --model-dir, no --tiny
        "render": ["render", str(tmp_path / "missing.latents.safetensors"), "-o", str(tmp_path / "b.mp4")],
        "encode-prompt": ["encode-prompt", str(job), "-o", str(tmp_path / "p.safetensors")],
        "bench": ["bench", "--preset", "tiny", "--device", "cuda", "--cp", "4096"],  # more GPUs than any host
    }
    for command, args in cases.items():
        code, _, err = run_cli(args, capsys)
        assert_fault(code, err, command, "")


def test_corrupt_checkpoints_are_our_words_not_pytorchs_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    pickled = tmp_path / "pickled.pt"
    torch.save({"w": torch.zeros(2), "when": time.struct_time((2026, 1, 1, 0, 0, 0, 0, 1, 0))}, pickled)
    for src in (garbage, pickled):
        code, _, err = run_cli(
            ["convert-checkpoint", str(src), str(tmp_path / "out.safetensors"), "--tiny"], capsys
        )
        assert_fault(code, err, "convert-checkpoint", str(src), None)
    assert "time.struct_time" in err and "could run code" in err
    assert not (tmp_path / "out.safetensors").exists()
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copy(garbage, model_dir / "tokenizer.pth")
    with pytest.raises(CosmosError, match="not a readable PyTorch checkpoint") as info:
        load_vae(model_dir / "tokenizer.pth")
    assert "weights_only" not in str(info.value)


def test_third_party_warnings_do_not_come_before_our_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def noisy_load(path: Path) -> object:
        warnings.warn("TypedStorage is deprecated", UserWarning, stacklevel=1)  # as torch says on old files
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    monkeypatch.setattr(checkpoint, "_torch_load", noisy_load)
    src = tmp_path / "old.pt"
    src.write_bytes(b"x")
    code, _, err = run_cli(
        ["convert-checkpoint", str(src), str(tmp_path / "o.safetensors"), "--tiny"], capsys
    )
    assert "TypedStorage" not in assert_fault(code, err, "convert-checkpoint", str(src))


def test_a_missing_depth_model_in_infer_names_only_options_infer_has(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ("COSMOS_T2_DEPTH_MODEL_DIR", "COSMOS_T2_SAM2_MODEL_DIR", "COSMOS_T2_GROUNDING_MODEL_DIR"):
        monkeypatch.delenv(env, raising=False)
    spec = job.parent / "depth.json"
    spec.write_text(json.dumps({"name": "depth", "prompt": "noise", "video_path": "input.mkv", "depth": {}}))
    code, _, err = run_cli(["infer", str(spec), "-o", str(tmp_path / "out"), "--tiny", *FAST], capsys)
    line = assert_fault(
        code, err, "infer", "COSMOS_T2_DEPTH_MODEL_DIR"
    )  # every --option named exists on infer
    assert "--model-dir" in line and "depth_anything" in line
    # the controls command has the option, and says so
    code, _, err = run_cli(["controls", str(spec), "-o", str(tmp_path / "c"), "--tiny"], capsys)
    assert "--depth-model-dir" in assert_fault(code, err, "controls", "COSMOS_T2_DEPTH_MODEL_DIR")
