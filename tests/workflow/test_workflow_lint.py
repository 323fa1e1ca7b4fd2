"""The workflow keeps the Snakemake workflow catalog's standard: `snakemake --lint` and `snakefmt --check` are
clean, and the files the catalog reads are where it looks for them (and its rule-graph command runs on .test).
Each check runs on copies in a temporary folder, so the repository's own results/ stays untouched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEFILE = REPO / "workflow" / "Snakefile"


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def workdir(tmp_path: Path, config: str) -> Path:
    """A working directory with the bundled example and one of the repository's configs, as its users have:
    `default` is config/config.yaml in the folder itself, `.test` the catalog's test folder beside examples/."""
    shutil.copytree(REPO / "examples" / "robot", tmp_path / "examples" / "robot")
    if config == "default":
        shutil.copytree(REPO / "config", tmp_path / "config")
        return tmp_path
    shutil.copytree(REPO / ".test", tmp_path / ".test")
    return tmp_path / ".test"


@pytest.mark.parametrize("config", ["default", ".test"])
def test_lint_is_clean(tmp_path: Path, config: str) -> None:
    proc = run([str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--lint"], workdir(tmp_path, config))
    out = proc.stdout + proc.stderr
    # Snakemake exits 1 and prints "Lints for ..." blocks for every finding (absolute paths, rules without
    # log:, params that are not functions, a missing conda env, ...)
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in out


def test_snakefmt_check_is_clean() -> None:
    snakefmt = BIN / "snakefmt"
    assert snakefmt.is_file(), "snakefmt is missing: it is in the dev extra (pip install -e '.[dev]')"
    # from the repository root, so snakefmt reads [tool.snakefmt] (line length 110) from pyproject.toml
    proc = run([str(snakefmt), "--check", "workflow/"], REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_the_catalog_finds_its_files_and_draws_the_rule_graph(tmp_path: Path) -> None:
    card = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    stack = card["usage"]["software-stack-deployment"]
    assert set(stack) == {"conda", "apptainer", "apptainer+conda", "report"} and stack["report"] is True
    assert card["usage"]["mandatory-flags"]["flags"].startswith("--profile profiles/")
    for path in ("workflow/Snakefile", "config/config.yaml", "config/README.md", "workflow/schemas"):
        assert (REPO / path).exists(), path
    assert not (REPO / "Snakefile").exists(), "a top-level Snakefile would shadow workflow/Snakefile"
    # the command the catalog runs for a workflow's tube map
    cwd = workdir(tmp_path, ".test").parent
    proc = run([str(BIN / "snakemake"), "-s", str(SNAKEFILE), "-c", "1", "-d", ".test", "--forceall",
                "--rulegraph"], cwd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "digraph snakemake_dag" in proc.stdout and 'label = "diffuse"' in proc.stdout
