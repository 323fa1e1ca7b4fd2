"""Test-only: run the `cosmos-t2` console script in-process, as the installed entry point would."""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

import pytest
import typer.main

from cosmos_t2.cli import app, main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    """`cosmos-t2 ARGS` through `main()`; returns (exit code, stdout, stderr), the streams "" without capsys
    (module-scoped fixtures have none)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["cosmos-t2", *args])
        with pytest.raises(SystemExit) as info:
            main()
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    problems = error_options_problems(args, err)
    assert not problems, problems  # issue 32: a message recommends only options its command has
    return int(info.value.code or 0), out, err


# `infer`'s stage lines (`[name 1.2s] ...`) and its summary (`done name: ...`): what a job's log shows
# before the one error line.
_PROGRESS_LINE = re.compile(r"^(\[\S+ \d+\.\ds\] |done \S+: )")


def without_progress(err: str) -> list[str]:
    """The non-blank lines of stderr that are not progress lines."""
    return [line for line in err.splitlines() if line.strip() and not _PROGRESS_LINE.match(line)]


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


@functools.cache
def command_options() -> dict[str, frozenset[str]]:
    """Each command's path ("infer", "models check") -> every option it accepts (its groups' included)."""
    found: dict[str, frozenset[str]] = {}

    # typer vendors its own click (typer._click): read commands by their attributes, not click's classes
    def walk(command: Any, path: str, inherited: frozenset[str]) -> None:
        options = set(inherited) | {"--help"}
        for param in command.params:
            options |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip(), frozenset(options))
        else:
            found[path] = frozenset(options)

    walk(typer.main.get_command(app), "", frozenset())
    return found


def named_command(text: str, start: int) -> str | None:
    """The command an option belongs to when the text names one right before it (`infer --model-dir`,
    `cosmos-t2 models check DIR --modalities`)."""
    before = text[:start]
    for command in sorted(command_options(), key=len, reverse=True):
        if re.search(rf"(?:^|[\s`(]){re.escape(command)}(?: (?!--)[^\s`;,]+)* $", before):
            return command
    return None


def error_options_problems(args: list[str], err: str) -> list[str]:
    """Options named in the `error:` lines of `cosmos-t2 ARGS`'s stderr that the command does not have."""
    words = [a for a in args if not a.startswith("-")]
    commands = command_options()
    command = next((" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in commands), None)
    if command is None:
        return []
    problems = []
    for line in err.splitlines():
        if not line.startswith("error:"):
            continue
        for match in OPTION.finditer(line):
            owner = named_command(line, match.start()) or command
            if match.group() not in commands[owner]:
                problems.append(f"`cosmos-t2 {owner}` has no {match.group()}: {line}")
    return problems
