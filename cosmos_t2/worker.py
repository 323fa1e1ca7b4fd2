"""The torchrun worker: ``python -m cosmos_t2.worker ARGS`` runs the CLI as one rank of a job.

It sits above the CLI (which relaunches commands under torchrun through `distributed.launch`) so
that nothing below imports the CLI back. A failure is recorded where torchrun's agent reads it,
then the rank exits at once (`distributed.launch.exit_rank`).
"""

from __future__ import annotations

import sys

from cosmos_t2.cli import app
from cosmos_t2.distributed.launch import exit_rank, failures_recorded
from cosmos_t2.reproducible import pin_for_command


def worker_main() -> None:
    """One torchrun worker: the normal CLI, with failures recorded for the agent."""
    pin_for_command(sys.argv)  # inherited from the agent already, unless torchrun was started by hand
    try:
        with failures_recorded():
            app(prog_name="cosmos-t2")
    except Exception as exc:
        exit_rank(exc)


if __name__ == "__main__":
    worker_main()
