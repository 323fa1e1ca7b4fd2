"""How the workflow tests start Snakemake: this environment's binary, on the repository's workflow."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SNAKEFILE = REPO / "workflow" / "Snakefile"


def snakemake_command(*args: str, profile: str | None = "local") -> list[str]:
    """`snakemake -s workflow/Snakefile [--profile profiles/PROFILE] ARGS...` (a test runs it in its own folder)."""
    chosen = ["--profile", str(REPO / "profiles" / profile)] if profile else []
    return [str(SNAKEMAKE), "-s", str(SNAKEFILE), *chosen, *args]
