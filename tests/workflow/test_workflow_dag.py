"""The Snakemake workflow end to end on its DAG: dry runs, profiles, and caching/resume with a
stand-in `cosmos-t2` that writes each rule's declared outputs (the real chain is test_workflow_run.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _snakemake import snakemake_command

REPO = Path(__file__).resolve().parents[2]

# Writes what each command's contract says it writes and logs the call, in a few milliseconds, so
# these tests exercise Snakemake's scheduling, caching and resume rather than the model.
FAKE_CLI = """\
#!{python}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
calls = Path(os.environ["FAKE_CALLS"])
with calls.open("a") as log:
    log.write(" ".join(args[:2]) + "\\n")
cmd = args[0]
out = Path(args[args.index("--json-out" if cmd == "validate" else "-o") + 1])
if cmd == "validate":
    out.write_text(json.dumps({{"name": args[args.index("--name") + 1], "args": args}}))
elif cmd == "decode":
    (out / "input.mkv").write_text("frames")
    (out / "input.json").write_text("{{}}")
elif cmd in ("controls", "masks"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "edge.mkv").write_text("edges")
elif cmd == "encode-prompt":
    out.write_text("embeddings")
elif cmd == "infer":
    name = json.loads(Path(args[1]).read_text())["name"]
    latents = out / f"{{name}}.latents.safetensors"
    latents.write_text("half")
    if calls.read_text().count("infer ") == int(os.environ.get("FAKE_HANG_AT_INFER", "0")):
        time.sleep(120)  # the test kills the run here
    latents.write_text("latents")
    (out / f"{{name}}.json").write_text(json.dumps({{"timings": {{"diffusion": 1.0}}}}))
elif cmd == "render":
    out.write_text("video")
    out.with_suffix(".json").write_text("{{}}")  # its sidecar, a declared output too
elif cmd == "report":
    out.write_text("<html></html>")
else:
    sys.exit(f"unexpected command {{cmd}}")
"""


def write_sweep(folder: Path, weights: tuple[float, ...] = (0.5, 1.0)) -> None:
    ex = folder / "ex"
    ex.mkdir(parents=True, exist_ok=True)
    (ex / "input.mp4").write_bytes(b"not really a video: only its bytes are hashed")
    base = {"prompt": "a robot arm stacks red cubes", "video_path": "input.mp4"}
    (ex / "edge.json").write_text(json.dumps({**base, "edge": {}}))
    (ex / "vis.json").write_text(json.dumps({**base, "vis": {}}))
    (folder / "sweep.yaml").write_text(
        textwrap.dedent(f"""\
        specs: [ex/edge.json, ex/vis.json]
        grid:
          control_weight: {list(weights)}
          num_steps: [2]
        """)
    )


def snakemake(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    cmd = [*snakemake_command(profile=None), "--configfile", "sweep.yaml", *args]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def job_counts(output: str) -> dict[str, int]:
    """The `Job stats` table of a Snakemake run or dry run."""
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0] if "Job stats:" in output else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M) if m[1] != "total"}


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    write_sweep(tmp_path)
    return tmp_path


def test_dry_run_shares_decode_controls_and_prompt_between_four_diffusion_jobs(sweep_dir: Path) -> None:
    counts = job_counts(snakemake(sweep_dir, "--dry-run", "--cores", "1"))
    assert counts == {
        "spec": 8,  # 4 jobs + 1 decode + 2 controls + 1 prompt
        "decode": 1,
        "controls": 2,
        "prompt": 1,
        "diffuse": 4,
        "encode": 4,
        "manifest": 1,
        "report": 1,
        "all": 1,
    }


@pytest.mark.parametrize("profile", ["local", "local-gpu", "slurm-h100", "slurm-h200", "slurm-cpu"])
def test_each_profile_dry_runs(sweep_dir: Path, profile: str) -> None:
    extra = ["--executor", "slurm"] if profile.startswith("slurm") else []
    if profile == "local-gpu":  # two GPUs for one diffusion job: context parallel under torchrun
        extra = ["--resources", "gpu=2", "--set-resources", "diffuse:gpu=2", "--printshellcmds"]
    out = snakemake(sweep_dir, "--profile", str(REPO / "profiles" / profile), *extra, "--dry-run")
    assert job_counts(out)["diffuse"] == 4
    # each profile's own run folder, named from its resources (profiles set no config)
    label = {"local": "cpu-local"}.get(profile, profile)
    assert f"results/{label}/diffuse/" in out
    if profile.startswith("slurm"):
        # the rules say what a stage needs, the profile only where it goes: the GPU model for GPU stages only
        gpu = profile.removeprefix("slurm-")
        diffuse = out.split("rule diffuse:", 1)[1].split("rule ", 1)[0]
        decode = out.split("rule decode:", 1)[1].split("rule ", 1)[0]
        if gpu == "cpu":
            assert ", gpu=0," in diffuse and "gpu_model=," in diffuse and "slurm_partition=cpu" in diffuse
        else:
            assert (
                f"gpu_model={gpu}," in diffuse and ", gpu=1," in diffuse and "slurm_partition=gpu" in diffuse
            )
        assert ", gpu=0," in decode and "gpu_model=," in decode and "mem_mb=3000" in diffuse  # tiny's needs
    # one-GPU CUDA jobs in a SLURM allocation go to its server (a job step of the allocation that keeps the
    # models for the others: prompt, diffuse, render); CPU jobs and two GPUs a job: each in its own processes
    assert re.search(r" infer .* --latents-only ", out)
    if profile in ("slurm-h100", "slurm-h200"):
        for command in ("encode-prompt", "infer", "render"):
            lines = re.findall(rf"cosmos-t2 {command} .*", out)
            assert lines and all("--server --server-idle 600" in line for line in lines), command
    else:
        assert not re.search(r" infer .*--server", out)
        if profile != "local-gpu":  # whose one-GPU prompt and render jobs are served, as on a GPU here
            assert not re.search(r"cosmos-t2 (encode-prompt|render) .*--server", out)
    if profile == "local-gpu":
        assert re.search(
            r"torchrun --standalone --nproc_per_node=2 -m cosmos_t2.worker infer .* --gpus 2 ",
            out,
        )
        assert "--device cuda" in out
        # every diffuse job shares one compile cache (the schema's default folder)
        assert re.search(r"infer .* --compile-cache \.cache/cosmos-t2/torch-compile", out)
        assert re.search(r"infer .* --offload auto", out) and "--memory-cap" not in out  # config defaults


def rule_resources(output: str, rule: str) -> list[str]:
    """The `resources:` line of each job of `rule` in a dry run's output."""
    blocks = output.split(f"rule {rule}:")[1:]
    return [block.split("resources: ", 1)[1].split("\n", 1)[0] for block in blocks]


def test_one_gpu_diffuse_jobs_use_the_server_unless_config_says_no(sweep_dir: Path) -> None:
    """serve: auto hands one-GPU CUDA jobs to `cosmos-t2 serve`; serve=False keeps each in its own process.
    Served, a render takes no `gpu` (the server runs its decode under its GPU lock), so Snakemake runs it
    beside the next diffuse job; in its own process it takes the GPU as before."""
    profile = str(REPO / "profiles" / "local-gpu")
    out = snakemake(sweep_dir, "--profile", profile, "-n", "-p")
    for command in ("infer", "render"):  # the same server: the renders use the diffuse jobs' VAE
        lines = re.findall(rf"cosmos-t2 {command} .*", out)
        assert len(lines) == 4 and all("--server --server-idle 600 " in line for line in lines), command
    encode, diffuse = rule_resources(out, "encode"), rule_resources(out, "diffuse")
    assert len(encode) == 4 and all(", gpu=0," in r and "served_gpu=1" in r for r in encode), encode
    assert len(diffuse) == 4 and all(", gpu=1," in r and "served_gpu" not in r for r in diffuse), diffuse
    out = snakemake(sweep_dir, "--profile", profile, "--config", "serve=False", "serve_idle_s=5", "-n", "-p")
    lines = re.findall(r"cosmos-t2 (?:infer|render) .*", out)
    assert len(lines) == 8 and not any("--server" in line for line in lines)
    encode = rule_resources(out, "encode")
    assert len(encode) == 4 and all(", gpu=1," in r and "served_gpu" not in r for r in encode), encode


@pytest.fixture
def fake_cli(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "cosmos-t2"
    script.write_text(FAKE_CLI.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    calls.touch()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_CALLS": str(calls)}
    return env


def calls_since(env: dict[str, str], start: int) -> list[str]:
    return Path(env["FAKE_CALLS"]).read_text().splitlines()[start:]


def infers(env: dict[str, str]) -> int:
    return sum(c.startswith("infer ") for c in calls_since(env, 0))


def run_until_killed(folder: Path, env: dict[str, str], at_infer: int) -> None:
    """Run the sweep on one core and SIGKILL Snakemake and its jobs while diffusion job `at_infer` runs."""
    env = {**env, "FAKE_HANG_AT_INFER": str(at_infer)}
    cmd = [
        *snakemake_command(profile=None),
        "--configfile",
        "sweep.yaml",
        "--cores",
        "1",
    ]
    out = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=folder, env=env, start_new_session=True, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 240
        while infers(env) < at_infer and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert infers(env) == at_infer, "the run never reached the diffusion job to kill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: Snakemake gets no chance to clean up
        proc.wait()


def test_killed_run_resumes_and_changes_redo_only_affected_jobs(
    sweep_dir: Path, fake_cli: dict[str, str]
) -> None:
    run_until_killed(sweep_dir, fake_cli, at_infer=4)
    first = calls_since(fake_cli, 0)
    assert first.count(next(c for c in first if c.startswith("decode"))) == 1

    # resume: unlock (the killed run held the lock), then only the unfinished work runs
    snakemake(sweep_dir, "--unlock")
    n = len(first)
    snakemake(sweep_dir, "--cores", "2", "--rerun-incomplete", env=fake_cli)
    resumed = [c.split()[0] for c in calls_since(fake_cli, n)]
    assert resumed.count("infer") == 1  # the killed job; the three finished ones are kept
    assert not {"decode", "controls", "encode-prompt", "validate"} & set(resumed)
    assert (sweep_dir / "results" / "report.html").is_file()
    run_dir = sweep_dir / "results" / "cpu-local"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["hardware"]["label"] == "cpu-local" and len(manifest["jobs"]) == 4
    for job in manifest["jobs"]:
        assert (run_dir / "benchmarks" / "diffuse" / f"{job['benchmarks']['diffuse']}.tsv").is_file()
        assert (run_dir / job["paths"]["latents"]).read_text() == "latents"

    assert "Nothing to be done" in snakemake(sweep_dir, "--cores", "2", env=fake_cli)

    # a lost diffusion output: that job, its video and the report, nothing else
    victim = manifest["jobs"][0]
    (run_dir / victim["paths"]["latents"]).unlink()
    n = len(calls_since(fake_cli, 0))
    snakemake(sweep_dir, "--cores", "2", env=fake_cli)
    redone = calls_since(fake_cli, n)
    assert sorted(c.split()[0] for c in redone) == ["infer", "render", "report"]
    assert victim["key"] in " ".join(redone)

    # one weight changed: the two jobs with that weight (and their specs), nothing shared
    write_sweep(sweep_dir, weights=(0.5, 0.8))
    counts = job_counts(snakemake(sweep_dir, "--dry-run", "--cores", "2", env=fake_cli))
    assert counts == {"spec": 2, "diffuse": 2, "encode": 2, "manifest": 1, "report": 1, "all": 1}


def test_bundled_examples_and_a_mask_prompt_dry_run(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "robot", tmp_path / "robot")
    masked = json.loads((tmp_path / "robot" / "depth.json").read_text())
    masked.update(name="robot_masked", edge={"mask_prompt": "the robot arm"})
    (tmp_path / "robot" / "masked.json").write_text(json.dumps(masked))
    (tmp_path / "sweep.yaml").write_text("specs: [robot/*.json, robot/batch.jsonl]\ngrid: {num_steps: [2]}\n")
    out = snakemake(tmp_path, "--dry-run", "--cores", "1", "--printshellcmds")
    counts = job_counts(out)
    samples = {"edge", "vis", "depth", "seg", "multicontrol", "masked", "edge_low", "depth_edge"}
    assert counts["diffuse"] == len(samples) and counts["masks"] == 1 and counts["decode"] == 1
    # controls given as files (depth.json, seg.json) need no controls job; edge, vis, edge_low,
    # multicontrol (edge + vis), masked and depth_edge (edge) need four distinct control sets
    assert counts["controls"] == 4
    assert re.search(r"cosmos-t2 masks \S+ -o \S+ --input \S+/decode/\w+/input.mkv", out)


def test_bad_configs_stop_before_any_job(sweep_dir: Path) -> None:
    base = [
        *snakemake_command(profile=None),
        "--configfile",
        "sweep.yaml",
        "--dry-run",
    ]
    for extra, message in (
        (["--config", "tiny=False"], "tiny is false: set model_dir"),
        (["--config", "device=tpu"], "sweep.yaml: key 'device': 'tpu' is not one of"),
        (["--config", "offload=disk"], "key 'offload': 'disk' is not one of"),
        (["--config", "tinny=true"], "key 'tinny': unknown key (did you mean 'tiny'?)"),
        (["--config", "specs=[nothing/*.json]"], "no spec file matches"),
    ):
        proc = subprocess.run([*base, *extra], cwd=sweep_dir, capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, extra
        if "validat" not in message and "matches" not in message and "model_dir" not in message:
            # a schema violation is one line, not Snakemake's dump of the whole schema
            assert len((proc.stdout + proc.stderr).strip().splitlines()) == 1, proc.stdout + proc.stderr


def test_a_config_file_replaces_the_default_config(sweep_dir: Path) -> None:
    """Beside the sweep folder lies a default config/config.yaml (two specs, two weights): a config file
    given with --configfile is the whole sweep, not merged into it, and without one config/config.yaml is
    read."""
    shutil.copytree(REPO / "config", sweep_dir / "config")
    default = sweep_dir / "config" / "config.yaml"
    default.write_text(default.read_text().replace("examples/robot/", "ex/"))
    (sweep_dir / "one.yaml").write_text("specs: [ex/edge.json]\n")
    base = [
        *snakemake_command(),
    ]

    def counts(*args: str) -> dict[str, int]:
        proc = subprocess.run(
            [*base, *args, "-n"], cwd=sweep_dir, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return job_counts(proc.stdout + proc.stderr)

    assert counts()["diffuse"] == 4  # config/config.yaml: 2 specs x 2 weights
    one = counts("--configfile", "one.yaml")
    assert one["diffuse"] == 1 and one["controls"] == 1 and one["encode"] == 1  # nothing inherited
    # several config files given are merged with each other, later ones winning (Snakemake's rule)
    (sweep_dir / "seeds.yaml").write_text("grid: {seed: [1, 2, 3]}\n")
    assert counts("--configfile", "one.yaml", "seeds.yaml")["diffuse"] == 3

    # a config without the one required key is refused before any job, naming the key
    (sweep_dir / "no-specs.yaml").write_text("grid: {seed: [1]}\n")
    proc = subprocess.run(
        [*base, "--configfile", "no-specs.yaml", "-n"],
        cwd=sweep_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "'specs' is a required property" in proc.stdout + proc.stderr


def test_profiles_never_override_what_the_config_file_sets(sweep_dir: Path) -> None:
    """device, tiny and hardware_label in a config file win over every profile; left out, the profile's
    resources decide the device and the run folder."""
    text = (sweep_dir / "sweep.yaml").read_text()
    (sweep_dir / "mine.yaml").write_text(
        text + "device: cpu\ntiny: false\nmodel_dir: /models/c25\nhardware_label: mine\n"
    )
    for profile in ("local", "local-gpu", "slurm-h100"):
        extra = ["--executor", "slurm"] if profile.startswith("slurm") else []
        profile_dir = str(REPO / "profiles" / profile)
        out = snakemake(sweep_dir, "--profile", profile_dir, *extra, "--configfile", "mine.yaml", "-n", "-p")
        infer = re.findall(r"cosmos-t2 infer .*", out)
        assert len(infer) == 4 and all("results/mine/" in line for line in infer), profile
        assert all("--device cpu" in line and "--model-dir /models/c25" in line for line in infer), profile
        assert not any("--tiny" in line or "--gpus" in line for line in infer), profile
        assert "device cpu, hardware label mine" in out
        # the same sweep without those keys: the profile's hardware
        out = snakemake(sweep_dir, "--profile", profile_dir, *extra, "-n", "-p")
        device = "cpu" if profile == "local" else "cuda"
        assert f"--device {device} " in out and all(
            "--tiny" in x for x in re.findall(r"cosmos-t2 infer .*", out)
        )
