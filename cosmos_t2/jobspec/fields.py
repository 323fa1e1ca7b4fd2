"""Typed reading of one JSON object's keys, with errors that name the file and the full key path."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.parse import type_name


@dataclass(frozen=True)
class Source:
    """Where a sample came from: for messages, and for resolving relative paths."""

    where: str  # the file, with ":line" in a JSONL
    base_dir: Path  # relative paths in the file resolve here
    overridden: frozenset[str]  # dotted keys set by --set: their paths resolve against overrides_dir
    overrides_dir: Path | None = None  # None: the working folder (a server's job: its client's folder)

    def error(self, key: str | None, message: str) -> CosmosError:
        if key in self.overridden:
            message += " (from --set)"
        return CosmosError(message, file=self.where, key=key)

    def base_for(self, key: str) -> Path:
        if key in self.overridden:
            return self.overrides_dir or Path.cwd()
        return self.base_dir


def show(value: Any) -> str:
    """A value as the user wrote it, shortened, with its JSON type unless it is a number."""
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    if len(text) > 60:
        text = text[:57] + "..."
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return text if is_number else f"{text} ({type_name(value)})"


def is_integer(value: Any) -> bool:
    # 3.0 counts as 3, as in pydantic's lax mode that upstream uses; True does not count as 1.
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


class Fields:
    """Typed access to the keys of one object (the sample, or a control block at `prefix`).

    Each getter returns `default` when the key is missing, and also when it is null and the default
    is None (an optional key); any other value must have the right type and range.
    """

    def __init__(self, src: Source, data: dict[str, Any], prefix: str = "") -> None:
        self.src, self.data, self.prefix = src, data, prefix

    def key(self, name: str) -> str:
        return self.prefix + name

    def error(self, name: str, message: str) -> CosmosError:
        return self.src.error(self.key(name), message)

    def given(self, name: str) -> bool:
        return self.data.get(name) is not None

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for name in self.data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.error(name, f"unknown key{hint}")

    def _get(self, name: str, default: Any, convert: Callable[[Any], Any]) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        if value is None and default is None:
            return None
        return convert(value)

    def integer(
        self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> Any:
        if lo is None:
            wanted = "an integer"
        elif hi is not None:
            wanted = f"an integer in [{lo}, {hi}]"
        else:
            wanted = "an integer > 0" if lo == 1 else f"an integer >= {lo}"

        def convert(v: Any) -> int:
            if not is_integer(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
                raise self.error(name, f"expected {wanted}, got {show(v)}")
            return int(v)

        return self._get(name, default, convert)

    def number(
        self, name: str, default: float | None, lo: float, hi: float, *, from_text: bool = False
    ) -> Any:
        def convert(given: Any) -> float:
            v = given
            if from_text and isinstance(v, str):  # upstream types sigma_max as a string
                with contextlib.suppress(ValueError):
                    v = float(v)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise self.error(name, f"expected a number in [{lo:g}, {hi:g}], got {show(given)}")
            return float(v)

        return self._get(name, default, convert)

    def boolean(self, name: str, default: bool) -> bool:
        def convert(v: Any) -> bool:
            if not isinstance(v, bool):
                raise self.error(name, f"expected true or false, got {show(v)}")
            return v

        return self._get(name, default, convert)

    def text(self, name: str, default: str | None = None, *, nonblank: str | None = None) -> Any:
        """A string; with `nonblank` (what the text must name), an empty or all-space one is an error."""

        def convert(v: Any) -> str:
            if not isinstance(v, str):
                raise self.error(name, f"expected a string, got {show(v)}")
            if nonblank is not None and not v.strip():
                raise self.error(name, f"is blank: name {nonblank}, or leave the key out")
            return v

        return self._get(name, default, convert)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None) -> Any:
        def convert(v: Any) -> str:
            if not isinstance(v, str) or v not in choices:
                options = ", ".join(f'"{c}"' for c in choices)
                raise self.error(name, f"expected one of {options}, got {show(v)}")
            return v

        return self._get(name, default, convert)

    def path(self, name: str, *, must_exist: bool = True, allow_dir: bool = False) -> Path | None:
        def convert(v: Any) -> Path:
            if not isinstance(v, str) or not v:
                raise self.error(name, f"expected a file path (a string), got {show(v)}")
            path = Path(os.path.abspath(self.src.base_for(self.key(name)) / Path(v).expanduser()))
            if must_exist and not (path.is_file() or (allow_dir and path.is_dir())):
                raise self.error(name, f"{'file or folder' if allow_dir else 'file'} not found: {path}")
            return path

        return self._get(name, None, convert)

    def integers(self, name: str) -> tuple[int, ...] | None:
        def convert(v: Any) -> tuple[int, ...]:
            if not isinstance(v, list) or not all(is_integer(x) for x in v):
                raise self.error(name, f"expected a list of integers, got {show(v)}")
            return tuple(int(x) for x in v)

        return self._get(name, None, convert)
