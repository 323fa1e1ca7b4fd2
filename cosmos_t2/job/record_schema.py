"""The job record (`job.sidecar.JobRecord`) as a JSON Schema (draft 2020-12), made from the dataclasses'
types so the two cannot drift: docs/record.schema.json is this, written out (`write_schema`), and a test
checks it is current. Keys the record does not name are allowed (a newer cosmos-t2's)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from cosmos_t2.job.sidecar import (
    SCHEMA_VERSION,
    AccelerationRecord,
    DeviceRecord,
    JobRecord,
    MemoryRecord,
    ProvenanceRecord,
    Timings,
)

SCHEMA_ID = "https://github.com/cosmos-t2/cosmos-t2/docs/record.schema.json"
_PARTS: dict[type, str] = {
    DeviceRecord: "device", MemoryRecord: "memory", AccelerationRecord: "acceleration",
    ProvenanceRecord: "provenance",
}  # fmt: skip
_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
# The sidecar's names for Timings' fields (it writes them at the top level).
_TIMING_NAMES = {"stages_s": "timings_s"}


def _schema_of(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_schema_of(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(options) == 1 and "type" in options[0] and nullable:
            return {**options[0], "type": [options[0]["type"], "null"]}
        return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
    if hint in _PARTS:
        return {"$ref": f"#/$defs/{_PARTS[hint]}"}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is dict:
        value = _schema_of(args[1]) if args and args[1] is not Any else {}
        return {"type": "object", **({"additionalProperties": value} if value else {})}
    if origin is list:
        item = _schema_of(args[0]) if args and args[0] is not Any else {}
        return {"type": "array", **({"items": item} if item else {})}
    return {}  # Any


def _properties(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: _schema_of(hints[f.name]) for f in dataclasses.fields(cls) if f.name != "extra"}


def record_schema() -> dict[str, Any]:
    """The JSON Schema of a job's sidecar."""
    top = _properties(JobRecord)
    top.pop("timings")
    for name, schema in _properties(Timings).items():
        top[_TIMING_NAMES.get(name, name)] = schema
    top["schema_version"] = {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION,
                             "description": "absent in sidecars written before the record was versioned (1)"}  # fmt: skip
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cosmos-t2 job record (the sidecar JSON beside a job's outputs)",
        "description": inspect.cleandoc(JobRecord.__doc__ or ""),
        "type": "object",
        "required": ["name"],
        "properties": top,
        "$defs": {
            name: {
                "type": "object",
                "description": (cls.__doc__ or "").strip(),
                "properties": _properties(cls),
            }
            for cls, name in _PARTS.items()
        },
    }


def write_schema(path: Path) -> Path:
    path.write_text(json.dumps(record_schema(), indent=2) + "\n")
    return path


if __name__ == "__main__":  # python -m cosmos_t2.job.record_schema docs/record.schema.json
    import sys

    write_schema(Path(sys.argv[1]))
