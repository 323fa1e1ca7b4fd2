"""The one error type users see: the CLI turns it into one red line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class CosmosError(Exception):
    """A problem with the user's input or environment, explained in one line.

    `file` and `key` (a dotted key path such as ``depth.control_weight``) are folded into the
    message so that every error says where to look.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None) -> None:
        self.reason = message
        self.file = str(file) if file is not None else None
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


def os_error_line(exc: OSError) -> str:
    """An operating-system error as one line naming its path(s): `a -> b: No space left on device`."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def error_line(exc: CosmosError | OSError) -> str:
    """The one line a failed command prints for `exc`, whatever a library put in its message."""
    line = str(exc) if isinstance(exc, CosmosError) else os_error_line(exc)
    return " ".join(line.split())
