# Input functions and the sweep plan. Keys and paths come from cosmos_t2.workflow (keys, sweep), so the
# rules below only wire files; see that module for what each stage's key depends on.
import os
import shlex
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cosmos_t2.errors import CosmosError
from cosmos_t2.workflow.manifest import PATHS, job_paths, manifest
from cosmos_t2.workflow.keys import FileHasher
from cosmos_t2.workflow.needs import memory_mb, spec_footprint, stage_resources
from cosmos_t2.workflow.sweep import name_constraint, plan_sweep

if not config["tiny"] and not config["model_dir"]:
    raise WorkflowError(
        "tiny is false: set model_dir (the Cosmos-Transfer2.5-2B folder), e.g. --config tiny=False model_dir=..."
    )

RESULTS = config["results"]
RUN = f"{RESULTS}/{config['hardware_label']}"
REPORT = config["report"] or f"{RESULTS}/report.html"
try:
    SWEEP = plan_sweep(config, Path.cwd(), FileHasher(Path(RESULTS) / ".file-digests.json"))
except CosmosError as exc:  # a bad spec or config: the one line, not a traceback into the planner
    raise WorkflowError(str(exc)) from None
GPU_DEVICE = config["device"] == "cuda"
BENCH = config["bench_presets"]

# Rules call `cosmos-t2` and `torchrun`: when they are not on PATH (the environment was not
# activated, e.g. `.venv/bin/snakemake ...`), use the ones beside the Python running Snakemake.
if shutil.which("cosmos-t2") is None:
    os.environ.update(PATH=os.pathsep.join([os.environ.get("PATH", ""), os.path.dirname(sys.executable)]))


def run_path(what, **wildcards):
    """A path under the run folder; wildcards left out stay as {patterns} for rule outputs."""
    pattern = PATHS[what]
    return f"{RUN}/{pattern.format_map(_KeepMissing(wildcards))}"


class _KeepMissing(dict):
    def __missing__(self, key):
        return f"{{{key}}}"


def spec_command(wildcards, json_out, log):
    """`cosmos-t2 validate` of the sample this sweep offers for a stage's key, run by the spec rule rather than
    given as its params: another sweep's sample for the same key is then no reason to rerun."""
    stage = SWEEP.stage_spec(wildcards.stage, wildcards.key)
    command = ["cosmos-t2", "validate", stage.spec_file, *stage.validate_args(), "--json-out", json_out]
    return f"{shlex.join(command)} > {shlex.quote(log)} 2>&1"


def stage_spec(stage):
    return lambda wildcards: run_path("spec", stage=stage, key=wildcards.key)


def decoded_input(wildcards):
    return run_path("decoded", key=SWEEP.decode_of[wildcards.key])


def diffuse_inputs(wildcards):
    paths = job_paths(SWEEP.jobs[wildcards.job])
    return {k: f"{RUN}/{paths[k]}" for k in ("spec", "prompt", "controls", "masks") if k in paths}


def infer_args(wildcards, input, resources):
    """Everything `cosmos-t2 infer` is told besides the job spec and the output folder."""
    args = ["--latents-only", "--quiet", "--device", config["device"], "--prompt-embeddings", input.prompt]
    if GPU_DEVICE and resources.gpu >= 1:
        args += ["--gpus", str(resources.gpu)]
    if "controls" in input.keys():
        args += ["--controls-dir", input.controls]
    if "masks" in input.keys():
        args += ["--masks-dir", input.masks]
    # One kernel cache for every diffuse job: only the sweep's first GPU process pays for compilation.
    args += (
        ["--compile-cache", config["compile_cache"]] if config["compile_cache"] else ["--no-compile-cache"]
    )
    args += ["--offload", config["offload"]]  # exact layouts: not part of the content key
    if config["deterministic"] != "auto":  # the same bits in every process on CUDA (CPU: always)
        args += ["--deterministic" if config["deterministic"] else "--no-deterministic"]
    args += ["--memory-cap", str(config["memory_cap"])] if config["memory_cap"] else []
    return args + serve_args(wildcards, resources) + model_args("model_dir")


def serve_args(wildcards, resources):
    """`--server --server-idle S` where use_server: the stage (prompt, diffuse, render) is a request to the
    GPU's one server, which keeps the text encoder, the network and the VAE between them. A function of
    resources, so turning the server on or off reruns nothing (Snakemake's params trigger ignores it). A
    render beside the diffuse jobs asks no `gpu` but is still the GPU's (`served_gpu`, see needs())."""
    if use_server(resources.gpu or getattr(resources, "served_gpu", 0)):
        return ["--server", "--server-idle", str(config["serve_idle_s"])]
    return []


# Jobs sent to a cluster run in allocations of their own, each job in a job step. A dry run has no cluster
# executor to ask, so the profile's resources say it too (a SLURM partition or a GPU model).
ON_CLUSTER = workflow.remote_exec or not workflow.local_exec or HARDWARE.cluster


def gpu_slot_count():
    """How many GPUs a local CUDA sweep's one-GPU jobs share out, one each (`cosmos-t2 --gpu-slots N`): the
    global `gpu` resource when it is over 1, else 0 (no slots: one GPU, the CPU, or a cluster, whose
    allocations each get their own devices)."""
    gpus = workflow.global_resources["gpu"].value if "gpu" in workflow.global_resources else 0
    if not GPU_DEVICE or ON_CLUSTER or not isinstance(gpus, int) or gpus <= 1:
        return 0
    return gpus


GPU_SLOTS = gpu_slot_count()


def gpu_command(wildcards, resources):
    """The command a GPU stage runs: `cosmos-t2`, and `--gpu-slots N` for a one-GPU job of a sweep over N
    local GPUs, so that N concurrent jobs open N different GPUs rather than all cuda:0. A function of
    resources, so Snakemake does not count it among the params that make a job rerun: running a sweep on
    another number of GPUs redoes nothing."""
    if GPU_SLOTS and resources.gpu == 1:
        return f"cosmos-t2 --gpu-slots {GPU_SLOTS}"
    return "cosmos-t2"


def use_server(gpus):
    """Whether prompt, diffuse and render jobs go to a per-GPU `cosmos-t2 serve` process (key serve): auto
    on one CUDA GPU, here or in a SLURM allocation, where a job's imports, load and compile cost as much as
    a distilled job's steps; never on CPU, whose jobs are short and where the demo leaves no process behind.
    On SLURM the GPU stages of a group share an allocation (the profiles' `accelerator` group), whose batch
    step starts the server as a job step of that allocation before the first job (start_allocation_server;
    a served job that finds none starts it the same way: cosmos_t2.service.allocation), and the
    allocation's end ends it."""
    if config["serve"] == "auto":
        return GPU_DEVICE and gpus == 1
    return bool(config["serve"])


# Served on this machine's one GPU, a render's GPU part (the VAE decode) waits for the server's GPU lock
# and its mp4 write does not, so encode jobs take no `gpu`, and Snakemake runs render N while diffuse N+1
# runs, whose steps hide render N's write. Not with GPU slots, where a render's client would take a GPU's
# slot for its whole life (and the server is found by the slot's device), nor without a server.
RENDER_BESIDE_DIFFUSE = GPU_DEVICE and not ON_CLUSTER and not GPU_SLOTS and use_server(1)


def stop_server():
    """A sweep that handed its diffuse jobs to a server stops it when it ends, so the GPU is free at once
    rather than after serve_idle_s (a server busy with another sweep's job stops after that job). Logged,
    never raised: the sweep's own outcome stands. Not on a cluster: there each server is a job step of an
    allocation, which ended with the allocation's last job."""
    if not use_server(1) or ON_CLUSTER:
        return
    from cosmos_t2.service.address import server_address
    from cosmos_t2.service.client import request
    from cosmos_t2.service.slots import slot_environments

    # With GPU slots each GPU has its own server (its address names the job's CUDA_VISIBLE_DEVICES).
    try:
        envs = slot_environments(GPU_SLOTS) if GPU_SLOTS else [os.environ]
    except CosmosError as exc:  # more slots than CUDA_VISIBLE_DEVICES names: no job got a GPU either
        logger.warning(f"cosmos-t2: could not stop the diffusion servers: {exc}")
        return
    for env in envs:
        on = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if GPU_SLOTS else ""
        try:
            answer = request(server_address(env), "stop")
        except (CosmosError, OSError) as exc:
            logger.warning(f"cosmos-t2: could not stop the diffusion server{on}: {exc}")
            continue
        if answer is not None:
            logger.info(f"cosmos-t2: stopped the diffusion server{on} (pid {answer['pid']}, "
                        f"{answer['jobs']['done']} jobs done, built {answer['builds']})")  # fmt: skip


SERVED_RULES = {"prompt", "diffuse", "encode"}  # the rules whose command takes serve_args


def target_rules():
    """The rules of the jobs this Snakemake was spawned to run (`--target-jobs rule:wildcards ...`, which the
    executor plugin passes to an allocation's Snakemake); empty for the main process."""
    args = sys.argv
    if "--target-jobs" not in args:
        return set()
    rules = set()
    for arg in args[args.index("--target-jobs") + 1 :]:
        if arg.startswith("-"):
            break
        rules.add(arg.split(":", 1)[0])
    return rules


def start_allocation_server():
    """In the batch step of a SLURM allocation (the executor plugin's Snakemake that runs a group's jobs, each
    in a job step of its own), start the allocation's server now, as a job step of the allocation, rather
    than from its first served job: the srun that keeps that step alive then lives in the batch step, which
    lasts as long as the allocation, not in a job's step, which a cgroup-tracking cluster (proctrack/cgroup)
    ends with every process in it. The jobs' own clients find it (the same address: the same host, Python,
    code, allocation and GPUs), or start one themselves where this could not."""
    batch_step = workflow.remote_exec and "SLURM_JOB_ID" in os.environ and "SLURM_STEP_ID" not in os.environ
    # only for an allocation that runs a served stage (not decode's, a CPU one)
    if not batch_step or not use_server(1) or not target_rules() & SERVED_RULES:
        return
    from cosmos_t2.service.address import server_address
    from cosmos_t2.service.client import start_ahead

    try:
        address = server_address()
    except CosmosError as exc:
        logger.warning(f"cosmos-t2: no server started ahead of the jobs: {exc}")
        return
    start_ahead(address, ["--idle-timeout", str(config["serve_idle_s"])])


start_allocation_server()


def launcher(wildcards, resources):
    # One process per GPU, started here so SLURM sees one task; `infer --gpus N` inside torchrun
    # runs as one rank instead of relaunching itself. Such a job takes no GPU slot: its ranks open
    # cuda:0..N-1 of every GPU, as before slots (run it alone, or on a cluster, to keep it apart).
    if resources.gpu > 1:
        return f"torchrun --standalone --nproc_per_node={resources.gpu} -m cosmos_t2.worker"
    return gpu_command(wildcards, resources)


def model_args(dir_key):
    """--tiny, or the model folder the stage reads (the text encoder defaults to model_dir/text_encoder)."""
    if config["tiny"]:
        return ["--tiny"]
    folder = config[dir_key] or (
        f"{config['model_dir']}/text_encoder" if dir_key == "text_encoder_dir" else ""
    )
    return [f"--{dir_key.replace('_', '-')}", folder]


def dir_args(*dir_keys):
    """`--<key> <folder>` for each configured model folder (depth, segmentation, grounding)."""
    return [a for k in dir_keys if config[k] for a in (f"--{k.replace('_', '-')}", config[k])]


def aux_model_args(*dir_keys):
    """--tiny (decode at the tiny model's resolution) and the model folders a stage runs."""
    return (["--tiny"] if config["tiny"] else []) + dir_args(*dir_keys)


# What each stage needs is declared once, in cosmos_t2.workflow.needs (GPU or not, host memory scaled to
# the job's shape, CPUs, minutes; TINY_NEEDS for the tiny model). A profile only maps these to its site
# (partition, GPU model, account in its default-resources; hardware.py), and `--set-resources
# rule:key=value` still overrides one.
SHAPED_STAGES = {"decode", "controls", "masks", "diffuse", "encode"}  # host memory grows with the video


def needs(stage):
    """The resources of a stage's rule; `mem_mb` is a function of the job for the stages that hold its
    video (Snakemake calls it per job while it builds the DAG)."""
    resources = stage_resources(
        stage, gpu_device=GPU_DEVICE, tiny=config["tiny"], gpu_model=HARDWARE.gpu_model
    )
    if stage == "encode" and RENDER_BESIDE_DIFFUSE:  # its GPU part is serialized by the server
        resources.update(gpu=0, gpu_model="", served_gpu=1)
    if stage in SHAPED_STAGES and not config["tiny"]:
        resources["mem_mb"] = lambda wildcards: memory_mb(
            stage, spec_footprint(stage_job(stage, wildcards).spec)
        )
    return resources


def stage_job(stage, wildcards):
    """The sweep's job a stage's rule runs for (diffuse, encode), or one that reads its output."""
    if stage in ("diffuse", "encode"):
        return SWEEP.jobs[wildcards.job]
    return SWEEP.job_of(stage, wildcards.key)


def slurm_preflight():
    """Before anything is submitted to SLURM: refuse, in one line, a job whose request (its rule's needs with
    the profile's and the command line's resources) no node of its partition can meet; it would pend
    forever. Not on the nodes' own job steps, not for local rules, not on a dry run (onstart runs for none).
    """
    plugin = workflow.executor_plugin
    if workflow.remote_exec or plugin is None or plugin.name != "slurm":
        return
    from cosmos_t2.workflow.slurm import preflight

    jobs = [j for j in workflow.dag.needrun_jobs() if not j.is_local]
    try:
        refusal = preflight((j.rule.name, j.resources) for j in jobs)
    except CosmosError as exc:
        raise WorkflowError(str(exc)) from None
    if refusal:
        raise WorkflowError(f"cosmos-t2: {refusal}; nothing was submitted")


def all_videos():
    return [run_path("video", job=job.key, name=job.name) for job in SWEEP.jobs.values()]


def all_diffusion(*what):
    return [run_path(w, job=job.key, name=job.name) for job in SWEEP.jobs.values() for w in what]


def all_bench():
    return [run_path("bench", preset=preset) for preset in BENCH]


def sweep_manifest():
    hardware = {"label": config["hardware_label"], "device": config["device"], "tiny": config["tiny"]}
    return manifest(SWEEP, hardware, BENCH)


def bench_args(wildcards, resources):
    args = [
        "--device",
        config["device"],
        "--steps",
        str(config["bench_steps"]),
        "--controls",
        config["bench_controls"],
    ]
    if resources.gpu > 1:
        args += ["--cp", str(resources.gpu)]
    if config["bench_compare"]:
        args += ["--compare", config["bench_compare"]]
    return args


def write_failure_report():
    """The report over whatever finished, written when the workflow fails; a failure here is logged,
    never raised, so Snakemake still reports the job that failed first."""
    from cosmos_t2.errors import CosmosError
    from cosmos_t2.report.build import ReportOptions, build_report
    from cosmos_t2.workflow.manifest import write_manifest

    options = ReportOptions(depth_model_dir=config["depth_model_dir"] or None, device=config["device"])
    try:
        write_manifest(run_path("manifest"), sweep_manifest())  # the manifest rule may not have run
        out = build_report(RESULTS, REPORT, options)
    except (CosmosError, OSError, ValueError) as exc:
        print(f"cosmos-t2: no report for the failed run: {exc}", file=sys.stderr)
        return
    print(f"cosmos-t2: wrote {out}: it lists the failed jobs with their logs", file=sys.stderr)
