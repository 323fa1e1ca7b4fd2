"""The sidecars the report reads, checked field by field: a field of an unexpected type (a hand-edited
sidecar, or one of an older or newer cosmos-t2) is shown as missing with one warning, never an error that
stops the whole report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cosmos_t2.job.sidecar import JobRecord

log = logging.getLogger(__name__)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or unreadable (a job that has not run yet)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# The sidecar fields the report reads, and the JSON types each must have. A field of another type (a
# hand-edited sidecar, or one of an older or newer cosmos-t2) is shown as missing ("—") with one warning
# naming the file and field, never an AttributeError that stops the whole report.
NUMBER = (int, float)
SIDECAR_FIELDS: dict[str, tuple[type, ...]] = {
    "steps": (int,), "diffusion_steps_total": (int,), "seconds_per_step": NUMBER, "label": (str,),
    "tiny": (bool,), "device": (dict,), "peak_memory_gib": (dict,), "timings_s": (dict,),
    "startup_s": (dict,), "render": (dict,),
}  # fmt: skip
NUMBER_MAPS = ("peak_memory_gib", "timings_s", "startup_s")  # {name: number}: a non-number entry is dropped


def read_sidecar(path: Path) -> JobRecord:
    """A job's record with every field the report reads of the type it expects (empty when missing)."""
    data = read_json(path) or {}

    def warn(line: str) -> None:  # once per file and field: several tables read the same sidecar
        if line not in _warned:
            _warned.add(line)
            log.warning(line)

    for key, types in SIDECAR_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            expected = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in types)
            warn(f"{path}: sidecar field {key!r} is {_json_type(value)}, not {expected}; shown as —")
            data[key] = None
        elif key in NUMBER_MAPS:
            data[key] = {k: v for k, v in value.items() if isinstance(v, NUMBER) and not isinstance(v, bool)}
            if len(data[key]) != len(value):
                warn(f"{path}: sidecar field {key!r} holds entries that are not numbers; they are left out")
    return JobRecord.from_json(data)


_warned: set[str] = set()
_JSON_NAMES = {dict: "an object", str: "a string", bool: "true/false", int: "an integer", float: "a number",
               list: "a list"}  # fmt: skip


def _json_type(value: Any) -> str:
    return next((name for t, name in _JSON_NAMES.items() if isinstance(value, t)), type(value).__name__)
