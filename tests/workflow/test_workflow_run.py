"""Acceptance: the default sweep (config/config.yaml, profile local: CPU, tiny model) really runs, writes the
report (and Snakemake's report.zip), redoes only what a deleted diffusion output needs, and plans only the
affected jobs after a weight changes. Runs in a copy of the example so the repository's own results/ stays
untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from _snakemake import snakemake_command

REPO = Path(__file__).resolve().parents[2]
NEEDED = {"validate", "decode", "controls", "encode-prompt", "infer", "render", "report"}


def missing_commands() -> set[str]:
    from cosmos_t2.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return NEEDED - names


pytestmark = pytest.mark.skipif(
    bool(missing_commands()), reason=f"pipeline commands not there yet: {sorted(missing_commands())}"
)


def snakemake(folder: Path, *args: str) -> str:
    cmd = [
        *snakemake_command(),
        *args,
    ]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0] if "Job stats:" in output else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M) if m[1] != "total"}


def test_default_sweep_runs_reports_and_reruns_only_what_changed(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "robot", tmp_path / "examples" / "robot")
    shutil.copytree(REPO / "config", tmp_path / "config")

    out = snakemake(tmp_path)
    counts = job_counts(out)
    assert (
        counts["diffuse"] == 4 and counts["decode"] == 1 and counts["prompt"] == 1 and counts["controls"] == 2
    )
    report = tmp_path / "results" / "report.html"
    html = report.read_text()
    run_dir = tmp_path / "results" / "cpu-local"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert len(manifest["jobs"]) == 4
    for job in manifest["jobs"]:
        assert (run_dir / job["paths"]["video"]).stat().st_size > 0
        assert job["name"] in html and job["key"] in html
    assert html.count('src="data:video/mp4;base64,') == 4 and "<th>edge_f1</th>" in html

    # each diffusion job's log says which stage it reached and ends in its summary line; its sidecar
    # knows it ran under Snakemake
    first = manifest["jobs"][0]
    log = (run_dir / "logs" / "diffuse" / first["key"] / f"{first['name']}.log").read_text()
    assert "] VAE encode" in log and "] diffusion steps" in log and "] step 2/2, " in log
    assert re.search(rf"^done {first['name']}: \S+\.latents\.safetensors in [0-9.]+ s", log, flags=re.M)
    sidecar = json.loads((run_dir / first["paths"]["diffuse_sidecar"]).read_text())
    assert "snakemake" in sidecar["versions"] and sidecar["provenance"]["command"][1] == "infer"

    # Snakemake's own report as the catalog asks for it (`--report report.zip`): every video and the
    # cosmos-t2 HTML report inside, with their captions
    snakemake(tmp_path, "--report", "report.zip")
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        index = archive.read("report/report.html").decode()
    videos = {Path(n).name for n in names if n.endswith(".mp4")}
    assert videos == {Path(j["paths"]["video"]).name for j in manifest["jobs"]}, names
    assert len([n for n in names if n.endswith(".mp4")]) == 4, names
    assert any(n.startswith("report/data/raw/") and n.endswith("/report.html") for n in names), names
    assert "cosmos-t2 HTML report" in index and "Output video of sample" in index

    # a deleted diffusion output: that job, its video and the report
    victim = manifest["jobs"][0]
    (run_dir / victim["paths"]["latents"]).unlink()
    assert job_counts(snakemake(tmp_path, "--dry-run")) == {"diffuse": 1, "encode": 1, "report": 1, "all": 1}
    before = {j["key"]: (run_dir / j["paths"]["video"]).stat().st_mtime_ns for j in manifest["jobs"]}
    snakemake(tmp_path)
    after = {j["key"]: (run_dir / j["paths"]["video"]).stat().st_mtime_ns for j in manifest["jobs"]}
    assert [k for k in before if before[k] != after[k]] == [victim["key"]]
    assert "Nothing to be done" in snakemake(tmp_path, "--dry-run")

    # Another sweep into the same results/ that adds samples sharing the video, the prompt and the edge control
    # (one weight of the two, to keep it short): it runs its own 2 jobs and none of the shared stages or of the
    # first sweep's; then the first sweep has nothing to do (a shared stage's spec follows its content key, not
    # the sample that wrote it).
    more = tmp_path / "more.yaml"
    more.write_text((tmp_path / "config" / "config.yaml").read_text().replace(
        "  - examples/robot/vis.json\n", "  - examples/robot/vis.json\n  - examples/robot/batch.jsonl\n"
    ).replace("control_weight: [0.5, 1.0]", "control_weight: [0.5]"))  # fmt: skip
    counts = job_counts(snakemake(tmp_path, "--configfile", str(more)))
    assert counts["diffuse"] == 2 and not {"decode", "prompt"} & counts.keys(), counts
    videos = {j["key"]: (run_dir / j["paths"]["video"]).stat().st_mtime_ns for j in manifest["jobs"]}
    assert videos == after, "the second sweep rewrote a video of the first"
    # the first sweep again: only its manifest and report (the second sweep's replaced them at the same paths)
    assert set(job_counts(snakemake(tmp_path, "--dry-run"))) <= {"manifest", "report", "all"}

    # one weight changed: only the two jobs with that weight (and their job specs)
    config = (tmp_path / "config" / "config.yaml").read_text()
    assert "control_weight: [0.5, 1.0]" in config
    (tmp_path / "config" / "config.yaml").write_text(
        config.replace("control_weight: [0.5, 1.0]", "control_weight: [0.5, 0.8]")
    )
    counts = job_counts(snakemake(tmp_path, "--dry-run"))
    assert counts == {"spec": 2, "diffuse": 2, "encode": 2, "manifest": 1, "report": 1, "all": 1}


def test_a_sweep_through_the_server_writes_the_same_latents_and_stops_it(tmp_path: Path) -> None:
    """`serve: true` hands every prompt, diffuse and render job to one `cosmos-t2 serve` process (on CPU here;
    auto does so on a local GPU): the latents and videos are the bytes a process per job writes, each job's
    log still holds its lines, the renders use the VAE the diffuse job built, and the server is gone when the
    sweep ends. A sweep whose server, client and Snakemake were killed while the second diffuse job ran
    redoes only what is missing (issue 31: resuming through the server)."""
    import tempfile

    from cosmos_t2.service.address import SERVE_DIR_ENV

    config = (
        "specs: [examples/robot/edge.json]\ngrid: {control_weight: [0.5, 1.0], num_steps: [2]}\ntiny: true\n"
    )
    serve_dir = Path(tempfile.mkdtemp(prefix="ct2-", dir="/tmp"))  # short: a socket path stays < 100 chars
    env = {**os.environ, SERVE_DIR_ENV: str(serve_dir)}
    latents: dict[str, dict[str, bytes]] = {}
    videos: dict[str, dict[str, bytes]] = {}
    try:
        for serve in ("True", "False"):
            folder = tmp_path / serve
            shutil.copytree(REPO / "examples" / "robot", folder / "examples" / "robot")
            (folder / "config").mkdir()
            (folder / "config" / "config.yaml").write_text(config)
            cmd = [*snakemake_command(),
                   "--config", f"serve={serve}", "--until", "encode"]  # fmt: skip
            run_dir = folder / "results" / "cpu-local"
            rendered_before = 0
            if serve == "True":
                rendered_before = kill_while_the_second_diffuse_job_runs(
                    [*cmd, "--cores", "1"], folder, env, serve_dir, run_dir
                )
                subprocess.run(
                    [*snakemake_command(), "--unlock"], cwd=folder, env=env, check=True, timeout=300
                )
            proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, out[-4000:]
            assert ("stopped the diffusion server" in out) == (serve == "True")
            if serve == "True":  # the profile's rerun-incomplete: the killed job alone, the first one kept
                assert job_counts(out)["diffuse"] == 1, out[-4000:]
                assert job_counts(out)["encode"] == 2 - rendered_before, out[-4000:]
            videos[serve] = {p.parent.name: p.read_bytes() for p in run_dir.glob("videos/*/*.mp4")}
            assert len(videos[serve]) == 2
            found = sorted(run_dir.glob("diffuse/*/*.latents.safetensors"))
            assert len(found) == 2
            latents[serve] = {p.parent.name: p.read_bytes() for p in found}
            for path in found:
                log = (
                    run_dir
                    / "logs"
                    / "diffuse"
                    / path.parent.name
                    / path.name.replace(".latents.safetensors", ".log")
                )
                assert re.search(r"^done \S+: \S+\.latents\.safetensors in ", log.read_text(), flags=re.M)
        assert latents["True"] == latents["False"] and videos["True"] == videos["False"]
        assert not list(serve_dir.glob("*.pid")) and not list(serve_dir.glob("*.sock"))  # it stopped
        # one log for both servers: the killed one's lines, then its successor's
        server_log = next(serve_dir.glob("*.log")).read_text()
        assert server_log.count("infer job done in") == 2 and server_log.count("render job done in") == 2
        assert server_log.count("encode-prompt job done in") == 1  # one prompt for both jobs
        # the successor built the network and the VAE for the redone diffuse job, and rendered with that VAE
        assert "(built: net 1, vae 1" in server_log.splitlines()[-1]
    finally:
        for pid_file in serve_dir.glob("*.pid"):
            os.kill(int(pid_file.read_text()), 15)
        shutil.rmtree(serve_dir, ignore_errors=True)


def kill_while_the_second_diffuse_job_runs(
    cmd: list[str], folder: Path, env: dict[str, str], serve_dir: Path, run_dir: Path
) -> int:
    """Run the sweep on one core (one job after the other) and SIGKILL Snakemake, the diffuse client and
    the server once the second diffuse job's log is opened (the first job is then finished and recorded);
    the number of videos rendered by then (Snakemake may have rendered the first job's already)."""
    proc = subprocess.Popen(cmd, cwd=folder, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(list(run_dir.glob("logs/diffuse/*/*.log"))) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep never reached its second diffuse job"
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before its second diffuse job could be killed"
    finally:
        for pid_file in serve_dir.glob("*.pid"):  # the server runs in its own session
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: Snakemake gets no chance to clean up
        proc.wait()
    assert len(list(run_dir.glob("diffuse/*/*.latents.safetensors"))) == 1
    return len(list(run_dir.glob("videos/*/*.mp4")))


# dots, dashes, spaces and quotes, and names that are prefixes of one another
AWKWARD_NAMES = ["a", "a_1", "a_1_edge", "x-y.v2", "it's a"]


def test_awkward_sample_names_each_get_their_video(tmp_path: Path) -> None:
    """Names with dots, dashes, digits, spaces and quotes, and names that are prefixes of one another: the
    {name} wildcard is exactly the sweep's names, so every sample runs through every rule to its own mp4."""
    import numpy as np

    from cosmos_t2.video import write_video

    frames = np.random.RandomState(0).randint(0, 255, (5, 64, 96, 3)).astype(np.uint8)
    write_video(tmp_path / "input.mp4", frames, 8.0)
    base = {"prompt": "a robot arm", "video_path": "input.mp4", "num_video_frames_per_chunk": 5, "edge": {}}
    lines = [json.dumps(base | {"name": name}) for name in AWKWARD_NAMES]
    (tmp_path / "names.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        "specs: [names.jsonl]\ngrid: {num_steps: [1]}\ntiny: true\n"
    )

    out = snakemake(tmp_path)
    counts = job_counts(out)
    assert counts["diffuse"] == counts["encode"] == len(AWKWARD_NAMES) and counts["controls"] == 1
    run_dir = tmp_path / "results" / "cpu-local"
    jobs = json.loads((run_dir / "manifest.json").read_text())["jobs"]
    assert sorted(j["name"] for j in jobs) == sorted(AWKWARD_NAMES)
    for job in jobs:
        video = run_dir / job["paths"]["video"]
        assert video.name == f"{job['name']}.mp4" and video.stat().st_size > 0, job["name"]
    html = (tmp_path / "results" / "report.html").read_text()
    assert html.count('src="data:video/mp4;base64,') == len(AWKWARD_NAMES)
    assert "Nothing to be done" in snakemake(tmp_path, "--dry-run")
