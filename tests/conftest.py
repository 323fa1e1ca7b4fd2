"""Shared test fixtures. Tests run on CPU with tiny random-weight configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cosmos_t2.reproducible import pin_cpu_numerics

REPO_ROOT = Path(__file__).resolve().parents[1]

# Keep CPU tests deterministic and light on a 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# What the CLI's entry point does before torch computes anything, so in-process jobs get the same bytes as
# `cosmos-t2` processes (cosmos_t2.reproducible).
pin_cpu_numerics()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
