"""Run one command on N processes under torchrun, and make a failing rank's message the one users see.

``cosmos-t2 infer JOB --gpus N`` calls :func:`maybe_relaunch_under_torchrun`: outside torchrun it
becomes the torchrun agent (in this process, through ``torch.distributed.run``) and starts N workers
as ``python -m cosmos_t2.worker <the same arguments>``; inside torchrun it returns False and the
command runs as one rank. When a worker raises, it writes its message to the error file torchrun
gives it (``TORCHELASTIC_ERROR_FILE``) and exits at once (:func:`exit_rank`); the agent stops the
other ranks within its monitor interval (0.1 s), even those blocked in a collective, and
:func:`run_torchrun` raises that message as a CosmosError (one red line, exit code 2).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.errors import CosmosError, os_error_line

WORKER_MODULE = "cosmos_t2.worker"  # named, not imported: the worker imports the CLI, which imports this
_ERROR_KEY = "cosmos_t2"  # our own block inside torchrun's error-file JSON


def under_torchrun() -> bool:
    """True in a process that torchrun (or an equivalent launcher) started as one rank."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def first_rank() -> bool:
    """True unless this process is a later rank of a torchrun job (rank 0 writes and speaks for them all)."""
    return os.environ.get("RANK", "0") == "0"


def maybe_relaunch_under_torchrun(
    gpus: int, device: str, argv: Sequence[str], *, option: str = "--gpus"
) -> bool:
    """Make sure the command runs on ``gpus`` processes.

    Returns True when this process was only the launcher and the workers have finished successfully
    (the caller returns at once, writing nothing); False when the caller should do the work here,
    as the single process (``gpus == 1``) or as one rank of a torchrun job. ``argv`` is the command
    line after the program name (``sys.argv[1:]``); the workers get exactly it. ``device`` "cpu"
    runs the ranks on gloo, "cuda" on NCCL with one GPU each. ``option``: the command's name for the
    count, as errors name it (`infer --gpus`, `bench --cp`).
    """
    if gpus < 1:
        raise CosmosError(f"{option} must be at least 1, got {gpus}", key=option)
    if under_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if world != gpus:
            raise CosmosError(f"{option} {gpus} but torchrun started {world} processes", key=option)
        return False
    if gpus == 1:
        return False
    if device.startswith("cuda"):
        import torch

        available = torch.cuda.device_count()
        if available < gpus:
            raise CosmosError(f"{option} {gpus} but this machine has {available} GPU(s)", key=option)
    run_torchrun(gpus, ["-m", WORKER_MODULE, *argv], device=device)
    return True


def run_torchrun(nproc: int, entry: Sequence[str], *, device: str = "cpu") -> None:
    """``torchrun --standalone --nproc-per-node nproc <entry>`` in this process (the agent).

    ``entry`` is what follows torchrun's options: ``["-m", module, *args]`` or ``[script, *args]``.
    Raises CosmosError with the first failing rank's message when any rank fails.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # torchrun would set 1; on CPU share the cores between the ranks instead.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--monitor-interval=0.1", *entry]
    )
    args.rdzv_backend, args.rdzv_endpoint = "c10d", "localhost:0"
    args.rdzv_id = f"cosmos-t2-{os.getpid()}-{time.time_ns()}"
    config, cmd, cmd_args = config_from_args(args)
    quiet = _quiet_torch_elastic_logs()
    try:
        elastic_launch(config=config, entrypoint=cmd)(*cmd_args)
    except ChildFailedError as exc:
        raise CosmosError(_root_cause(exc)) from None
    finally:
        for logger, level in quiet:
            logger.setLevel(level)


def _quiet_torch_elastic_logs() -> list[tuple[logging.Logger, int]]:
    """The agent logs a failure at ERROR with its own banner; we report it ourselves, once."""
    import torch.distributed.elastic.agent.server.local_elastic_agent  # noqa: F401  (creates loggers)

    saved = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("torch.distributed") and isinstance(logger, logging.Logger):
            saved.append((logger, logger.level))
            logger.setLevel(logging.CRITICAL)
    return saved


def _root_cause(exc: object) -> str:
    """The earliest failure that left a message; ranks that died only because a peer did come later.
    A bug (not a CosmosError) also gets its traceback printed, once, from the rank that had it."""
    failures = exc.failures  # type: ignore[attr-defined]
    recorded = [
        (data[_ERROR_KEY]["time"], rank, data[_ERROR_KEY])
        for rank, failure in failures.items()
        if isinstance(data := failure.error_file_data, dict) and _ERROR_KEY in data
    ]
    if recorded:
        _, rank, info = min(recorded, key=lambda item: item[:2])
        if info.get("traceback") and not info.get("user_error"):
            sys.stderr.write(info["traceback"])
        return f"rank {rank} failed: {info['message']}"
    rank, failure = exc.get_first_failure()  # type: ignore[attr-defined]
    how = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return f"rank {rank} failed with {how} and no message (see its output above)"


def record_failure(message: str, exc: BaseException | None = None, *, user_error: bool = False) -> None:
    """Write ``message`` where torchrun's agent looks for this rank's root cause (no-op outside it)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    now = time.time()
    tb = "".join(traceback.format_exception(exc)) if exc is not None else ""
    data = {
        "message": message,
        "timestamp": int(now),
        _ERROR_KEY: {
            "time": now,
            "rank": int(os.environ.get("RANK", 0)),
            "message": message,
            "traceback": tb,
            "user_error": user_error,
        },
    }
    write_json_atomic(path, data, indent=None)


@contextmanager
def failures_recorded() -> Iterator[None]:
    """Record any exception leaving the block as this rank's root cause, then let it propagate."""
    try:
        yield
    except CosmosError as exc:
        record_failure(str(exc), exc, user_error=True)
        raise
    except OSError as exc:  # a full disk, a permission: the user's to fix, one line as in one process
        record_failure(os_error_line(exc), exc, user_error=True)
        raise
    except Exception as exc:
        record_failure(f"{type(exc).__name__}: {exc}", exc)
        raise


def exit_rank(exc: BaseException) -> NoReturn:
    """End a failed rank at once: skipping the interpreter's teardown (seconds with torch and a
    process group loaded) lets the agent see the failure and stop the peers sooner. The launcher
    shows the root cause (and a bug's traceback); ranks that failed only because a peer did stay quiet."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2 if isinstance(exc, CosmosError) else 1)
