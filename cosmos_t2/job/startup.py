"""Where a job's process spent its time before the job's first stage.

A diffusion rule's wall time in Snakemake's benchmark file runs from the process's creation to its exit;
the sidecar's stage timings start when `run_job` does. Between the two lie the interpreter's start
(process creation to the first `cosmos_t2` import: Python, site-packages, the console script) and imports
(from there to the job's start: torch, the CLI, reading and validating the spec). The report shows both.
"""

from __future__ import annotations

import os
from pathlib import Path

from cosmos_t2 import IMPORTED_UNIX


def process_started_unix(pid: int | None = None) -> float | None:
    """When the process was created (Linux /proc, 10 ms resolution); None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime; the name in (...) may hold spaces
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def startup_seconds(job_started_unix: float) -> dict[str, float]:
    """{"process_start": s, "imports": s} before a job that started at `job_started_unix` (time.time())."""
    out = {"imports": round(max(job_started_unix - IMPORTED_UNIX, 0.0), 3)}
    created = process_started_unix()
    if created is not None:
        out = {"process_start": round(max(IMPORTED_UNIX - created, 0.0), 3), **out}
    return out
