"""What a finished sweep made, in three lines: the closing words of `make demo`.

A new user who runs the demo sees Snakemake's progress and then needs to know where the videos are, what
they are (the tiny random model's noise, not generated scenes) and where the report is. Run as
`python -m cosmos_t2.report.summary RESULTS REPORT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cosmos_t2.errors import CosmosError, error_line
from cosmos_t2.report.data import find_runs, finished_video, job_status
from cosmos_t2.report.sidecars import read_sidecar


def summary_lines(results: str | Path, report: str | Path) -> list[str]:
    """Three lines: how many videos where (and how many jobs failed), what model made them, the report."""
    runs = find_runs(Path(results))
    made: dict[Path, int] = {}
    failed = 0
    tiny: set[bool] = set()
    labels: set[str] = set()
    for run in runs:
        for job in run.manifest.get("jobs", []):
            video = run.folder / job["paths"]["video"]
            if finished_video(video):
                folder = run.folder / "videos"
                made[folder] = made.get(folder, 0) + 1
                sidecar = read_sidecar(video.with_suffix(".json"))
                tiny.add(bool(sidecar.tiny))
                labels.add(sidecar.label or "model named in no sidecar")
            elif job_status(run, job)["status"] == "failed":
                failed += 1
    count = sum(made.values())
    where = " and ".join(f"{folder}/" for folder in sorted(made)) or f"{results}/"
    first = f"made {count} video{'' if count == 1 else 's'} in {where}"
    if failed:
        first += f" ({failed} job{'' if failed == 1 else 's'} failed: see the report)"
    if tiny == {True}:
        second = (
            "they are noise from the tiny random-weight model (seeded random weights, CPU demo), "
            "not generated scenes"
        )
    else:
        second = f"made by the {' and '.join(sorted(labels)) or 'model named in no sidecar'}"
    return [first, second, f"report: {report}"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m cosmos_t2.report.summary RESULTS REPORT", file=sys.stderr)
        return 2
    try:
        lines = summary_lines(*argv)
    except CosmosError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
