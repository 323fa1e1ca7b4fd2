"""A server inside a SLURM allocation: a job step of its own, beside the job steps of the allocation's jobs.

Every job of a Snakemake group runs in a job step of the group's allocation (the executor plugin's `srun`),
and SLURM ends every process a step started when the step ends: a server forked by the first job would die
with it. So inside an allocation (SLURM_JOB_ID set) the server is started through `srun --overlap` as a
step of its own: it shares the allocation's GPU and memory with the job steps beside it instead of making
them pend (--overlap; it asks for one CPU and no memory of its own), sees the allocation's GPUs (a step
given no --gres gets all of the job's), and ends with the allocation (the batch script's end cancels it:
SIGTERM, which the server's cleanup handles).

SLURM cancels a step whose `srun` dies (measured: SIGKILL of that srun cancels the step at once), so that
srun must outlive the jobs: the workflow starts it from the allocation's batch step, which lasts as long as
the allocation (`start_allocation_server` in workflow/rules/common.smk), before the first job. A client
that finds no server starts one the same way from its own job step, detached, in a session of its own; the
step's output goes straight to the server's log (`--output`, opened on the node by slurmstepd). On the test
cluster (proctrack/linuxproc) that srun outlives the job step too; with proctrack/cgroup the step's end
kills every process in its cgroup, that srun as well, and the next job starts another server.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping

# The allocation's identity, which the server's srun needs; every other SLURM_* variable of the job's step
# (its CPUs, memory, GPUs, task count) would be read by srun as options for the new step, as SRUN_* and
# SBATCH_* are (the executor plugin's jobstep sanitizes its own sruns the same way).
KEEP = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR", "SLURM_SUBMIT_HOST")
STEP_NAME = "cosmos-t2-serve"


def allocation_id(env: Mapping[str, str]) -> str | None:
    """The SLURM job id of the allocation this process runs in, or None outside SLURM."""
    job_id = env.get("SLURM_JOB_ID", "").strip()
    return job_id if re.fullmatch(r"[0-9_]+", job_id) else None


def step_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` less the variables that srun would take for the new step's options."""
    return {
        k: v for k, v in env.items() if not (k.startswith(("SLURM_", "SRUN_", "SBATCH_")) and k not in KEEP)
    }


def step_command(job_id: str, log: str, srun: str = "srun") -> list[str]:
    """The `srun` that starts a server command (appended to it) as a step of allocation `job_id`."""
    escaped = log.replace("%", "%%")  # srun reads %j, %s, ... in a file name as its patterns
    return [
        srun,
        "--overlap",  # beside the job steps, sharing their CPUs, memory and GPUs: neither waits for the other
        f"--jobid={job_id}",
        "--ntasks=1",
        "--nodes=1",
        "--cpus-per-task=1",
        "--mem=0",  # no memory of its own (with --overlap: shares the job's); the jobs are what it runs
        f"--job-name={STEP_NAME}",  # what `squeue -s` shows
        "--input=none",
        f"--output={escaped}",
        f"--error={escaped}",
        "--open-mode=append",
        "--quiet",
    ]


def srun_path() -> str | None:
    return shutil.which("srun")
