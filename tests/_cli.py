"""Test-only: run the `cosmos-t2` console script in-process, as the installed entry point would."""

from __future__ import annotations

import re
import sys

import pytest

from cosmos_t2.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    """`cosmos-t2 ARGS` through `main()`; returns (exit code, stdout, stderr), the streams "" without capsys
    (module-scoped fixtures have none)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["cosmos-t2", *args])
        with pytest.raises(SystemExit) as info:
            main()
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return int(info.value.code or 0), out, err


# `infer`'s stage lines (`[name 1.2s] ...`) and its summary (`done name: ...`): what a job's log shows
# before the one error line.
_PROGRESS_LINE = re.compile(r"^(\[\S+ \d+\.\ds\] |done \S+: )")


def without_progress(err: str) -> list[str]:
    """The non-blank lines of stderr that are not progress lines."""
    return [line for line in err.splitlines() if line.strip() and not _PROGRESS_LINE.match(line)]
