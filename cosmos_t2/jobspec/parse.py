"""Reading spec files: JSON with comments (JSONC), JSONL, and `--set key.path=value` overrides.

Everything here turns text into plain Python data and reports bad text as a CosmosError that names
the file and the line; checking what the data means is `spec.py`'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError

SINGLE_SUFFIXES = (".json", ".jsonc")
BATCH_SUFFIXES = (".jsonl",)
MAX_DEPTH = 100  # a spec is at most 3 levels deep; deeper data only costs recursion later


@dataclass(frozen=True)
class RawSample:
    """One sample's data as read from a file, before validation."""

    data: dict[str, Any]
    where: str  # file (and ":line" in a JSONL) for error messages
    line: int | None  # 1-based line in a JSONL; None for a single-sample file


def strip_jsonc(text: str) -> str:
    """Blank out // and /* */ comments and trailing commas, keeping every other character in place.

    Replacing with spaces (newlines kept) means json's error line/column still point into the
    user's file. Trailing commas are allowed because NVIDIA's documented example ends a block with
    a comment after the last value's comma.
    """
    out = list(text)
    i, n = 0, len(text)
    last_sig = -1  # index of the last significant (non-space, non-comment) char outside strings
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            last_sig = min(i, n - 1)
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if text[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if c in "}]" and last_sig >= 0 and out[last_sig] == ",":
            out[last_sig] = " "
        if not c.isspace():
            last_sig = i
        i += 1
    return "".join(out)


def _no_duplicate_keys(where: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise CosmosError("the key appears twice in one object", file=where, key=key)
            obj[key] = value
        return obj

    return hook


def parse_json_text(text: str, where: str, line_offset: int = 0) -> Any:
    """Parse JSONC text; errors name `where` and the line/column (shifted by `line_offset`)."""
    try:
        data = json.loads(strip_jsonc(text), object_pairs_hook=_no_duplicate_keys(where))
    except json.JSONDecodeError as exc:
        raise CosmosError(
            f"invalid JSON at line {exc.lineno + line_offset}, column {exc.colno}: {exc.msg}", file=where
        ) from None
    except RecursionError:
        data = None  # deeper than the parser can go: certainly deeper than MAX_DEPTH
    else:
        if nesting_depth(data) <= MAX_DEPTH:
            return data
    raise CosmosError(f"JSON nested more than {MAX_DEPTH} levels deep", file=where)


def nesting_depth(data: Any) -> int:
    """How deep lists and objects nest in parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def read_spec_file(path: Path) -> list[RawSample]:
    """Read a .json/.jsonc (one sample) or .jsonl (one sample per line) spec file."""
    where = str(path)
    suffix = path.suffix.lower()
    if suffix not in SINGLE_SUFFIXES + BATCH_SUFFIXES:
        raise CosmosError(
            f"unsupported file extension {path.suffix!r}; expected .json, .jsonc or .jsonl", file=where
        )
    if not path.is_file():
        raise CosmosError("spec file not found", file=where)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CosmosError(f"cannot read the spec file: {exc}", file=where) from None

    if suffix in SINGLE_SUFFIXES:
        data = parse_json_text(text, where)
        _require_object(data, where)
        return [RawSample(data=data, where=where, line=None)]

    samples = read_jsonl_lines(text, where)
    for sample in samples:
        if isinstance(sample, CosmosError):
            raise sample  # the first bad line: one command's input is wrong
    if not samples:
        raise CosmosError("the JSONL file holds no samples", file=where)
    return [s for s in samples if isinstance(s, RawSample)]


def read_jsonl_lines(text: str, where: str) -> list[RawSample | CosmosError]:
    """Each line of a JSONL as its sample, or as the error that line alone has (a batch runs the rest)."""
    samples: list[RawSample | CosmosError] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line_where = f"{where}:{lineno}"
        try:
            if not line.strip():
                raise CosmosError(
                    f"line {lineno} is empty; a JSONL file needs one JSON object per line", file=where
                )
            if not strip_jsonc(line).strip():
                continue  # a line holding only a comment
            data = parse_json_text(line, where, line_offset=lineno - 1)
            _require_object(data, line_where)
        except CosmosError as exc:
            samples.append(exc)
            continue
        samples.append(RawSample(data=data, where=line_where, line=lineno))
    return samples


def read_spec_samples(path: Path) -> list[RawSample | CosmosError]:
    """As `read_spec_file`, but a JSONL's bad lines are errors in the list; a bad file still raises."""
    if path.suffix.lower() not in BATCH_SUFFIXES or not path.is_file():
        return list(read_spec_file(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CosmosError(f"cannot read the spec file: {exc}", file=path) from None
    samples = read_jsonl_lines(text, str(path))
    if not samples:
        raise CosmosError("the JSONL file holds no samples", file=path)
    # each failed line is named by its line (file:N), as a batch reports it among the jobs
    lines = [
        i
        for i, line in enumerate(text.splitlines(), start=1)
        if strip_jsonc(line).strip() or not line.strip()
    ]
    return [
        CosmosError(s.reason, file=f"{path}:{n}", key=s.key) if isinstance(s, CosmosError) and s.file == str(path)
        else s
        for s, n in zip(samples, lines, strict=True)
    ]  # fmt: skip


def _require_object(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise CosmosError(f"expected a JSON object at the top level, got {type_name(data)}", file=where)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """Turn `key.path=value` strings into {dotted key: value}; values are JSON where they parse, else text.

    `--set seed=7` gives 7, `--set resolution=480` gives 480 (spec.py accepts it for "480"),
    `--set prompt=a red car` gives the string, `--set edge={}` adds an edge block.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise CosmosError(
                f"expected KEY=VALUE (e.g. depth.control_weight=0.5), got {item!r}", key="--set"
            )
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            value = raw
        if nesting_depth(value) > MAX_DEPTH:
            raise CosmosError(
                f"the value of {key!r} is nested more than {MAX_DEPTH} levels deep", key="--set"
            )
        overrides[key] = value
    return overrides


def flatten_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"depth": {"control_weight": 0.5}} -> {"depth.control_weight": 0.5}; an empty object stays a block."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            for sub_key, sub_value in flatten_overrides(value).items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def apply_overrides(data: dict[str, Any], flat: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of `data` with each dotted key set; overrides win over the file."""
    merged = json.loads(json.dumps(data))  # deep copy of plain JSON data
    for dotted, value in flat.items():
        parts = dotted.split(".")
        node = merged
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise CosmosError(
                    f"cannot set {dotted!r}: this key holds {type_name(child)}, not an object",
                    file=where,
                    key=".".join(parts[: depth + 1]),
                )
            node = child
        leaf = parts[-1]
        if isinstance(value, dict) and not value and isinstance(node.get(leaf), dict):
            continue  # `--set edge={}` on a spec that already has an edge block: keep it
        node[leaf] = value
    return merged
