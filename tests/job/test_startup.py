"""The sidecar's start-up split: process creation -> first cosmos_t2 import -> the job's start."""

from __future__ import annotations

import ast
import subprocess
import sys
import time

from cosmos_t2 import IMPORTED_UNIX
from cosmos_t2.job.startup import process_started_unix, startup_seconds


def test_startup_parts_are_ordered_and_measure_a_sleeping_child() -> None:
    created = process_started_unix()
    assert created is not None and created <= IMPORTED_UNIX + 0.02 <= time.time() + 0.02
    parts = startup_seconds(time.time())
    assert set(parts) == {"process_start", "imports"} and all(v >= 0 for v in parts.values())
    # a child that sleeps 1 s before importing cosmos_t2 shows it as process start, not imports
    code = (
        "import time; time.sleep(1); import cosmos_t2.job.startup as s; print(s.startup_seconds(time.time()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    child = ast.literal_eval(out)
    assert child["process_start"] >= 0.95 and child["imports"] < child["process_start"]
