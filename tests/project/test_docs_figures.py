"""Every measured figure in the README, and the headline table of docs/performance.md, equals its record
(issue 33): the tables of docs/benchmarks.md, the JSON a run left under docs/data/, or the file that sets it
(the Makefile's torch pin, pyproject's Python).

`FIGURES` lists each figure: a pattern over the README whose group is the figure as the README writes it,
and where its value of record is. A number the README gives in a unit (s, min, GiB, GB, ×, %) that no
figure covers fails, as does a test count (it changes with every test): a new figure needs its record.
A figure edited in the README or in its record, but not in both, fails with the README line.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
H100_RUN = "## Whole jobs on one H100 (the README's figures)"
CAP12_RUN = "docs/data/2026-12-01-h200-bf31b98/cap12_720p1.json"  # 720p, one control, --memory-cap 12
WARM_35 = "35 steps, FlashAttention-4, warm compile cache"
WARM_DISTILLED = "distilled 4-step edge model, warm"
NVIDIA_35 = "upstream's code, 35 steps, H100 NVL (the seed guide)"
MEMORY_TIERS = "## Memory tiers (issue 20)"
UNIT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:s|min|ms|GiB|MiB|GB|×|%)(?!\w)")
TEST_COUNT = re.compile(r"\b\d+\s+(?:tests?|passed)\b")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a `## ` line) up to the next heading of its level or above."""
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    level = heading.split()[0]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", markdown[start:], re.M)]
    return markdown[start : start + ends[0]] if ends else markdown[start:]


def tables(markdown: str) -> list[list[dict[str, str]]]:
    """Each markdown table in `markdown`: its rows as header -> cell."""
    found: list[list[dict[str, str]]] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1]):
            if i > 0 and lines[i - 1].startswith("|"):
                continue
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True)))
            found.append(rows)
    return found


def row(rows: list[dict[str, str]], first_cell: str) -> dict[str, str]:
    matches = [r for r in rows if next(iter(r.values())) == first_cell]
    assert len(matches) == 1, f"{len(matches)} rows named {first_cell!r}"
    return matches[0]


def number(cell: str) -> float:
    return float(re.search(r"\d+(?:\.\d+)?", cell.replace(",", "")).group())  # type: ignore[union-attr]


@dataclass(frozen=True)
class Records:
    """The sources of record, as text (so a test can alter one and see the check fail)."""

    benchmarks: str
    makefile: str
    pyproject: str

    @classmethod
    def of_repo(cls) -> Records:
        return cls(
            *((REPO / name).read_text() for name in ("docs/benchmarks.md", "Makefile", "pyproject.toml"))
        )

    @cached_property
    def h100(self) -> list[list[dict[str, str]]]:
        return tables(section(self.benchmarks, H100_RUN))

    def h100_job(self, job: str, column: str) -> float:
        return number(row(self.h100[0], job)[column])

    def nvidia(self, column: str) -> float:
        return number(row(self.h100[1], NVIDIA_35)[column])

    def h100_run(self, what: str) -> str:
        found = re.search(r"\*\*(\d{4}-\d\d-\d\d), commit `(\w+)`", section(self.benchmarks, H100_RUN))
        assert found, f"{H100_RUN} names no date and commit"
        return found.group({"date": 1, "commit": 2}[what])

    def memory_caps(self) -> list[float]:
        """The caps of the memory-tier table (its rows other than the uncapped one)."""
        rows = tables(section(self.benchmarks, MEMORY_TIERS))[0]
        return [number(r["cap"]) for r in rows if r["cap"].endswith("GiB")]

    @staticmethod
    def cap12() -> dict[str, Any]:
        return json.loads((REPO / CAP12_RUN).read_text())

    def torch_pin(self) -> str:
        return re.search(r"torch==[\w.]+", self.makefile).group()  # type: ignore[union-attr]

    def python(self) -> str:
        return tomllib.loads(self.pyproject)["project"]["requires-python"].removeprefix(">=")


@dataclass(frozen=True)
class Figure:
    """A figure of the README (`pattern`'s one group) and its value of record."""

    pattern: str
    recorded: Callable[[Records], float | str]


FIGURES = [
    # What a real job needs (the first screen)
    Figure(r"takes (\d+) s for 35 steps", lambda r: r.h100_job(WARM_35, "wall")),
    Figure(r"\((\d+) s distilled\)", lambda r: r.h100_job(WARM_DISTILLED, "wall")),
    Figure(r"on one H100 with a ([\d.]+) GiB peak", lambda r: r.h100_job(WARM_35, "peak")),
    Figure(r"runs held to (\d+) GiB", lambda r: r.cap12()["options"]["memory_cap_gib"]),
    Figure(r"`--memory-cap (\d+)` picks", lambda r: r.cap12()["options"]["memory_cap_gib"]),
    Figure(r"picks `--offload (\w+)`", lambda r: r.cap12()["jobs"][0]["memory"]["plan"]["offload"]),
    Figure(
        r"`--offload blocks`: ([\d.]+) GiB peak",
        lambda r: r.cap12()["jobs"][0]["peak_memory_gib"]["gpu_allocated"],
    ),
    Figure(r"with Python ≥ ([\d.]+) and", Records.python),
    Figure(r"installs PyTorch \(`(torch==[\w.]+)`", Records.torch_pin),
    # Speed and memory
    Figure(r"\((\d{4}-\d\d-\d\d), commit `\w+`, \[the run\]", lambda r: r.h100_run("date")),
    Figure(r"\(\d{4}-\d\d-\d\d, commit `(\w+)`, \[the run\]", lambda r: r.h100_run("commit")),
    Figure(r"job ([\d.]+) s wall", lambda r: r.h100_job(WARM_35, "wall")),
    Figure(r"\(([\d.]+) s/step steady", lambda r: r.h100_job(WARM_35, "s / step (steady)")),
    Figure(r"FlashAttention-4, ([\d.]+) GiB peak\)", lambda r: r.h100_job(WARM_35, "peak")),
    Figure(r"the distilled 4-step job ([\d.]+) s;", lambda r: r.h100_job(WARM_DISTILLED, "wall")),
    Figure(r"takes ([\d.]+) s on an H100 NVL", lambda r: r.nvidia("whole job")),
    Figure(r"on an H100 NVL \(([\d.]+) GB\)", lambda r: r.nvidia("memory")),
    Figure(r"Offload tiers for (\d+)–\d+ GiB cards", lambda r: min(r.memory_caps())),
    Figure(r"Offload tiers for \d+–(\d+) GiB cards", lambda r: max(r.memory_caps())),
]


def _prose(readme: str) -> str:
    """The README with line breaks as spaces (a figure may wrap) and fenced blocks blanked, offsets kept."""
    blanked = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), readme)
    return blanked.replace("\n", " ")


def _line(readme: str, offset: int) -> int:
    return readme.count("\n", 0, offset) + 1


def _agrees(written: str, recorded: float | str) -> bool:
    if isinstance(recorded, str):
        return written == recorded
    decimals = len(written.partition(".")[2])
    return float(written) == round(float(recorded), decimals)


def figure_problems(readme: str, records: Records) -> list[str]:
    """What is wrong with the README's figures against `records` (nothing: an empty list)."""
    prose = _prose(readme)
    problems = []
    covered: list[tuple[int, int]] = []
    for figure in FIGURES:
        matches = list(re.finditer(figure.pattern, prose))
        if len(matches) != 1:
            problems.append(f"README.md: {len(matches)} places match {figure.pattern!r} (one expected)")
            continue
        match = matches[0]
        covered.append(match.span(1))
        recorded = figure.recorded(records)
        if not _agrees(match.group(1), recorded):
            problems.append(
                f"README.md:{_line(readme, match.start(1))}: {match.group(1)} where its record says {recorded}"
            )
    for match in UNIT.finditer(prose):
        if not any(start <= match.start() < end for start, end in covered):
            line = _line(readme, match.start())
            problems.append(
                f"README.md:{line}: {match.group()!r} has no record (add it to FIGURES, or drop it)"
            )
    for match in TEST_COUNT.finditer(prose):
        problems.append(
            f"README.md:{_line(readme, match.start())}: {match.group()!r}: a test count rots; drop it"
        )
    return problems


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_every_readme_figure_equals_its_record() -> None:
    assert figure_problems(readme(), Records.of_repo()) == []


def test_a_figure_changed_on_one_side_only_fails() -> None:
    records = Records.of_repo()
    assert "256.1 s wall" in readme()
    edited_readme = readme().replace("256.1 s wall", "249.0 s wall")
    assert any("249.0 where its record says 256.1" in p for p in figure_problems(edited_readme, records))
    table_row = f"| {WARM_35} | 256.1 s |"
    assert table_row in records.benchmarks
    edited_record = Records(records.benchmarks.replace(table_row, f"| {WARM_35} | 262.0 s |"), records.makefile,
                            records.pyproject)  # fmt: skip
    problems = figure_problems(readme(), edited_record)
    assert any("256 where its record says 262.0" in p for p in problems)
    assert any("256.1 where its record says 262.0" in p for p in problems)


def test_a_figure_without_a_record_or_a_test_count_fails() -> None:
    text = readme().replace("## Install\n", "## Install\n\nA job takes 3.5 min here; 812 tests pass.\n")
    problems = figure_problems(text, Records.of_repo())
    assert any("'3.5 min' has no record" in p for p in problems)
    assert any("'812 tests'" in p for p in problems)


def test_the_readme_lists_every_command_the_app_has() -> None:
    from _cli import command_options

    commands = {path.split()[0] for path in command_options() if path}
    listed = section(readme(), "## Install").split("Commands:", 1)[1].split("Every error", 1)[0]
    named = set(re.findall(r"`([a-z][a-z-]*)(?: [a-z|]+)?`", listed))
    assert named == commands


@dataclass(frozen=True)
class Run:
    """What a recorded run measured: its steady s/step (None: not in its record), job totals, peak GiB."""

    steady: float | None
    totals: tuple[float, ...]
    peak: float


def _bench_run(path: str, whole: str = "total_s") -> Run:
    data = json.loads((REPO / "docs/data" / path).read_text())
    job = data["jobs"][0]
    totals = (data[whole],) if whole in data else (job[whole],)
    return Run(job["steady_seconds_per_step"], totals, job["peak_memory_gib"]["gpu_allocated"])


def _sidecar_run(*paths: str) -> Run:
    sidecars = [json.loads((REPO / "docs/data" / p).read_text()) for p in paths]
    totals = sorted(s["total_s"] for s in sidecars)
    return Run(
        None,
        (totals[0], totals[-1])[: len(totals)],
        max(s["peak_memory_gib"]["gpu_allocated"] for s in sidecars),
    )


SERVED = [f"2026-12-02-h200/diffuse_server{n}_sidecar.json" for n in (2, 3, 4)]
# docs/performance.md's headline table: each row's first cell -> the run it reports.
PERFORMANCE_RUNS: dict[str, Callable[[], Run]] = {
    "35 steps, 1 control (edge computed), FlashAttention-4 (2026-12-02, `56de726`)": lambda: _bench_run("2026-12-02-h200/full_35.json"),
    "the same, cuDNN attention (2026-12-01, `bf31b98`)": lambda: _bench_run("2026-12-01-h200-bf31b98/full_35.json"),
    "guided generation, 3 steps, cuDNN (`bf31b98`)": lambda: _bench_run("2026-12-01-h200-bf31b98/guided.json"),
    "two chunks (185 frames), 3 steps each, cuDNN (`56de726`)": lambda: _bench_run("2026-12-02-h200/two_chunks.json"),
    "4 controls (edge, vis computed; depth, seg given), 3 steps, cuDNN (`bf31b98`)": lambda: _bench_run("2026-12-01-h200-bf31b98/none_720p4.json"),
    "distilled edge model, 4 steps, FlashAttention-4, plain `infer` (`eee70ee`)": lambda: _sidecar_run("2026-12-02-h200/distilled_infer_sidecar.json"),
    "4 distilled jobs in one process (`eee70ee`)": lambda: _bench_run("2026-12-02-h200/distilled_x4.json", "jobs_wall_s"),
    "the workflow's distilled diffuse job (latents), 2nd–4th through the server (`eee70ee`)": lambda: _sidecar_run(*SERVED),
}  # fmt: skip


def _leading(cell: str) -> tuple[str, ...]:
    """The number or the range (`16.7–17.2`) a cell starts with, as written."""
    found = re.match(r"\**([\d.]+)(?:–([\d.]+))?", cell)
    assert found, f"no figure at the start of {cell!r}"
    return tuple(g for g in found.groups() if g is not None)


def performance_problems(markdown: str) -> list[str]:
    rows = tables(section(markdown, "## Speed and memory"))[0]
    problems = [f"docs/performance.md: a row with no recorded run: {r['job (one H200; warm compile cache)']!r}"
                for r in rows if r["job (one H200; warm compile cache)"] not in PERFORMANCE_RUNS]  # fmt: skip
    for cells in rows:
        name = cells["job (one H200; warm compile cache)"]
        if name not in PERFORMANCE_RUNS:
            continue
        run = PERFORMANCE_RUNS[name]()
        pairs = list(zip(_leading(cells["whole job"]), run.totals, strict=True))
        pairs.append((_leading(cells["peak"])[0], run.peak))
        if run.steady is not None:
            pairs.append((_leading(cells["s / step (steady)"])[0], run.steady))
        problems += [
            f"docs/performance.md, {name}: {w} where its record says {r}"
            for w, r in pairs
            if not _agrees(w, r)
        ]
    return problems


def test_the_performance_table_equals_the_recorded_runs() -> None:
    text = (REPO / "docs/performance.md").read_text()
    assert performance_problems(text) == []
    edited = text.replace("| **265.3 s** |", "| **259.0 s** |")
    assert edited != text and performance_problems(edited) == [
        f"docs/performance.md, {next(iter(PERFORMANCE_RUNS))}: 259.0 where its record says 265.329"
    ]
