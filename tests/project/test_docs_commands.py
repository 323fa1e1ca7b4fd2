"""Every command in a fenced block of README.md and docs/*.md is checked (issue 30, item 7).

A block holds commands when it is tagged sh, bash, console or shell, or untagged and its first line starts
with a program (`UNTAGGED_NOT_COMMANDS` names the untagged blocks that are layouts or messages). Each
command of such a block (a line, `\\`-continued lines joined, split at `&&`, `|` and `;`) is checked here,
cheaply, by its program: `cosmos-t2` through the Typer app's own parser (the subcommand, every option and
its value), `snakemake` through Snakemake's parser (and its profile folder exists), `make` by the
Makefile's targets, `pip install` by pyproject's extras, `python -m`/`torchrun -m` by the module, the
operating system's `ps`/`kill` by running them on a process of this test. What needs a cluster, a GPU or
the network to really run is in `RUN_ELSEWHERE`, mapped to the test that runs it (which must exist). A
command of no program here and in no row fails, naming its file and line.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from cosmos_t2.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_TAGS = {"sh", "bash", "console", "shell"}
REPO_FOLDERS = {"examples", "config", "profiles", "tests", "scripts", "workflow", "docs"}
# Untagged blocks that are not commands, by file and first line.
UNTAGGED_NOT_COMMANDS = {
    ("docs/running.md", "edge.safetensors|.pt"),  # the --model-dir layout
    ("docs/workflow.md", "results/report.html"),  # the results folder
    ("docs/slurm.md", "cosmos-t2: rule diffuse asks"),  # a message the pre-flight prints
}
# What a line of the docs names but a reader fills in: `<name>`, `N`, `...`, `[optional parts]`.
PLACEHOLDER = re.compile(r"<[^>]+>|^[A-Z]+$|^\.\.\.$")
# Commands that need a cluster, a GPU or the network to really run: (pattern over the command, the test).
RUN_ELSEWHERE: list[tuple[str, str]] = [
    (r"^snakemake --profile profiles/slurm-", "tests/workflow/test_slurm.py::test_the_sweep_through_slurm_writes_the_local_bytes_retries_and_redoes_only_a_failed_job"),
    (r"^snakemake --profile profiles/slurm-h100 --dry-run$", "tests/workflow/test_workflow_dag.py::test_each_profile_dry_runs"),
    (r"^snakemake --profile profiles/local$", "tests/workflow/test_workflow_run.py::test_default_sweep_runs_reports_and_reruns_only_what_changed"),
    (r"^snakemake --profile profiles/local-gpu", "tests/workflow/test_workflow_dag.py::test_each_profile_dry_runs"),
    (r"^snakemake .*--configfile", "tests/workflow/test_workflow_dag.py::test_a_config_file_replaces_the_default_config"),
    (r"^squeue --me", "tests/workflow/test_slurm.py::test_ctrl_c_cancels_the_queued_and_running_jobs"),
    (r"^nvidia-smi$", "tests/project/test_docs_commands.py::test_nvidia_smi_runs_where_there_is_a_gpu"),
    (r"^CT2_SOAK_FIGURES=\S+ pytest .*tests/service/test_serve_soak.py -k 200$", "tests/service/test_serve_soak.py::test_soak_200_jobs"),
    (r"^cosmos-t2 models fetch", "tests/weights/test_models_hub.py::test_infer_model_dir_finds_every_model_fetch_fetched"),
    (r"--gpus [2-9N]", "tests/distributed/test_parallel.py::test_infer_on_two_cpu_processes_matches_one"),
    (r"^torchrun ", "tests/distributed/test_parallel.py::test_infer_on_two_cpu_processes_matches_one"),
    (r"cosmos-t2 bench --e2e", "tests/bench/test_bench_e2e.py"),
    (r"cosmos-t2 bench --sweep", "tests/bench/test_bench_sweep.py::test_a_tiny_sweep_through_snakemake_gives_a_row_per_job"),
    (r"download.pytorch.org", "(network: the CUDA wheel index; the extras are checked here)"),
]  # fmt: skip


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str  # as written, comments and continuations removed
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _blocks(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line of the first line inside, tag, lines) of each fenced block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opened = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if opened:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            yield i + 2, opened.group(1), lines[i + 1 : end]
            i = end
        i += 1


def _first_program(line: str) -> str:
    words = [w for w in line.split() if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)]
    return Path(words[0]).name if words else ""


def doc_commands() -> tuple[list[Command], list[str]]:
    """Every command of the docs' shell blocks, and the untagged blocks no rule classifies."""
    commands: list[Command] = []
    unclassified: list[str] = []
    for path in DOCS:
        name = str(path.relative_to(REPO))
        for first, tag, lines in _blocks(path):
            if tag not in SHELL_TAGS and tag != "":
                continue
            head = next((ln for ln in lines if ln.strip()), "")
            if tag == "" and not any(name == f and head.startswith(h) for f, h in UNTAGGED_NOT_COMMANDS):
                if _first_program(head) not in PROGRAMS:
                    unclassified.append(
                        f"{name}:{first}: untagged block {head!r}: a command of no known program"
                    )
                    continue
            elif tag == "":
                continue
            commands.extend(_commands(name, first, lines))
    return commands, unclassified


def _commands(name: str, first: int, lines: list[str]) -> Iterator[Command]:
    joined: list[tuple[int, str]] = []
    for offset, line in enumerate(lines):
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
        elif line.strip():
            joined.append((first + offset, line))
    for number, line in joined:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        part: list[str] = []
        for word in [*words, ";"]:
            if word in ("|", "&&", ";", "||"):
                if part:
                    yield Command(name, number, " ".join(part), part)
                part = []
            else:
                part.append(word)


# --- the checks, one per program -------------------------------------------------------------------


def _without_placeholders(argv: list[str]) -> list[str]:
    """The arguments with `[...]` brackets opened and a placeholder value given a real one (`N` -> 2)."""
    out = []
    for word in argv:
        word = word.strip("[]")
        if PLACEHOLDER.search(word):
            word = "2" if PLACEHOLDER.fullmatch(word) and word.isupper() else PLACEHOLDER.sub("x", word)
        if word and word != "...":
            out.append(word)
    return out


def check_cosmos_t2(argv: list[str]) -> str | None:
    """The subcommand exists and its own parser takes every option and value given."""
    command = typer.main.get_command(app)
    args = _without_placeholders(argv[1:])
    while hasattr(command, "commands"):
        while args and args[0].startswith("-") and args[0] != "--help":
            args.pop(0)  # the group's own options (--debug)
        if not args or args[0] == "--help":
            return None
        name = args.pop(0)
        if name not in command.commands:
            return f"no command {name!r}"
        command = command.commands[name]
    args = [a for a in args if a != "--help"]
    # Click's own parser and each value's type, without the options' callbacks (--device cuda checks
    # for a GPU, which a docs check must not need).
    context = command.make_context(command.name, [], resilient_parsing=True)
    try:
        values, extra, _ = command.make_parser(context).parse_args(args)
        if extra:
            return f"arguments left over: {' '.join(extra)}"
        for param in command.params:
            if values.get(param.name) is not None:
                if not isinstance(values[param.name], bool):  # typer's coercion, as process_value does it
                    param.get_runtime_param().coerce(values[param.name], param=param, ctx=context)
            elif param.required:
                return f"missing {param.human_readable_name}"
    except Exception as exc:  # click's UsageError and BadParameter (typer vendors click): say what is wrong
        return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
    return None


def check_snakemake(argv: list[str]) -> str | None:
    from snakemake.cli import get_argument_parser

    try:
        parsed = get_argument_parser().parse_args(_without_placeholders(argv[1:]))
    except SystemExit:
        return "snakemake's parser refuses it"
    for profile in parsed.profile or []:
        if not list((REPO / profile).glob("config*.yaml")):  # config.yaml, or config.v9+.yaml for Snakemake 9
            return f"no profile {profile}/config*.yaml"
    return None


def check_make(argv: list[str]) -> str | None:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    missing = [t for t in argv[1:] if t not in targets]
    return f"no Makefile target {', '.join(missing)}" if missing else None


def check_pip(argv: list[str]) -> str | None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for word in argv:
        asked = re.fullmatch(r"\.(?:\[([\w,]+)\])?", word)
        if asked and asked.group(1):
            missing = set(asked.group(1).split(",")) - extras
            if missing:
                return f"pyproject.toml has no extra {', '.join(sorted(missing))}"
    return None if argv[1:2] == ["install"] else "not a pip install"


def check_python(argv: list[str]) -> str | None:
    if "-m" not in argv:
        return "python without -m"
    module = argv[argv.index("-m") + 1]
    if importlib.util.find_spec(module) is None:
        return f"no module {module}"
    return (
        check_cosmos_t2(["cosmos-t2", *argv[argv.index("-m") + 2 :]])
        if module == "cosmos_t2.worker"
        else None
    )


def check_by_running(argv: list[str]) -> str | None:
    """ps and grep: run here, as written."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, input="")
    return None if done.returncode in (0, 1) and not done.stderr else f"exit {done.returncode}: {done.stderr}"


def check_kill(argv: list[str]) -> str | None:
    """kill <PID> / kill -- -<PGID>: run on a sleeping process of this test, which must end."""
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        args = [a.replace("<PID>", str(sleeper.pid)).replace("<PGID>", str(sleeper.pid)) for a in argv]
        done = subprocess.run([a for a in args if a != "..."], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return f"exit {done.returncode}: {done.stderr}"
        sleeper.wait(timeout=10)
        return None
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


PROGRAMS: dict[str, Callable[[list[str]], str | None] | None] = {
    "cosmos-t2": check_cosmos_t2,
    "snakemake": check_snakemake,
    "make": check_make,
    "pip": check_pip,
    "python": check_python,
    "python3": check_python,
    "torchrun": lambda argv: check_python(argv),
    "ps": check_by_running,
    "grep": check_by_running,
    "kill": check_kill,
    "nvidia-smi": None,  # RUN_ELSEWHERE
    "squeue": None,
    "pytest": None,
}


def _program(argv: list[str]) -> tuple[str, list[str]]:
    words = [w for w in argv if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)]
    return Path(words[0]).name, words


def _repo_files(argv: list[str]) -> list[str]:
    """The arguments that name a file of this repository (examples/..., config/...): they must exist."""
    return [w for w in argv if w.split("/")[0] in REPO_FOLDERS and not PLACEHOLDER.search(w)]


def _spec_is_valid(argv: list[str]) -> str | None:
    """A bundled spec a `cosmos-t2` line runs passes `cosmos-t2 validate`."""
    from _cli import run_cli

    for spec in [w for w in _repo_files(argv) if w.endswith((".json", ".jsonl"))]:
        code, _, _ = run_cli(["validate", str(REPO / spec)])
        if code != 0:
            return f"`cosmos-t2 validate {spec}` exits {code}"
    return None


def command_problem(command: Command) -> str | None:
    """What is wrong with one command (None: it checks out), the first thing found."""
    program, argv = _program(command.argv)
    missing = [w for w in _repo_files(argv) if not (REPO / w).exists()]
    if missing:
        return f"no {', '.join(missing)} in the repository"
    if program not in PROGRAMS:
        return f"no check for {program!r} and no row of RUN_ELSEWHERE"
    check = PROGRAMS[program]
    if check is None:
        elsewhere = any(re.search(pattern, command.text) for pattern, _ in RUN_ELSEWHERE)
        return None if elsewhere else f"{program!r} runs only elsewhere, and no row of RUN_ELSEWHERE names it"
    return check(argv) or (_spec_is_valid(argv) if program == "cosmos-t2" else None)


def command_problems(commands: list[Command]) -> list[str]:
    return [f"{command}: {why}" for command in commands if (why := command_problem(command)) is not None]


def test_every_fenced_command_in_the_docs_is_checked() -> None:
    commands, unclassified = doc_commands()
    assert len(commands) > 40 and {c.file for c in commands} >= {
        "README.md",
        "docs/running.md",
        "docs/slurm.md",
    }
    assert unclassified == []
    assert command_problems(commands) == []


def test_the_tests_that_run_commands_elsewhere_exist() -> None:
    commands, _ = doc_commands()
    for pattern, test in RUN_ELSEWHERE:
        assert any(re.search(pattern, c.text) for c in commands), (
            f"no command in the docs matches {pattern!r}"
        )
        if test.startswith("("):
            continue
        file, _, function = test.partition("::")
        source = (REPO / file).read_text()
        assert not function or re.search(rf"^def {function}\(", source, re.M), f"{test} does not exist"


def test_a_wrong_or_uncovered_command_names_its_file_and_line() -> None:
    lines = [
        "cosmos-t2 infer a.json --depth-model-dir d",  # an option infer does not have
        "cosmos-t2 modles check d",
        "snakemake --profile profiles/nowhere",
        "make deploy",
        "rsync -a out/ host:",  # a program nothing checks
        "cosmos-t2 validate examples/none.json",
    ]
    problems = command_problems(
        [Command("docs/x.md", n, text, shlex.split(text)) for n, text in enumerate(lines)]
    )
    assert [p.split(": ", 1)[0] for p in problems] == [f"docs/x.md:{n}" for n in range(len(lines))]
    assert "--depth-model-dir" in problems[0] and "'modles'" in problems[1] and "rsync" in problems[4]
    assert "no profiles/nowhere in the repository" in problems[2] and "deploy" in problems[3]
    assert "no examples/none.json in the repository" in problems[5]


def test_nvidia_smi_runs_where_there_is_a_gpu() -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi on this machine (no NVIDIA GPU)")
    assert subprocess.run(["nvidia-smi"], capture_output=True, timeout=60).returncode == 0
