"""The server runs the library, not the CLI: an `ast` scan of what the server's code may do.

service/ prints nothing through typer or rich (the job's events are the CLI's to print), and nothing on
the server's path changes the process's folder or command line (a served job gets absolute paths and its
client's argv as data)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cosmos_t2"
SERVER_PATH = [*sorted((PACKAGE / "service").glob("*.py")), PACKAGE / "cli" / "serve.py"]


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def process_global_changes(tree: ast.AST) -> list[str]:
    """`sys.argv = ...` (or augmented) and `os.chdir(...)` calls, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []  # fmt: skip
        for target in targets:
            if ast.unparse(target) == "sys.argv":
                found.append((node.lineno, "assigns sys.argv"))
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("os.chdir", "chdir", "contextlib.chdir") or name.endswith(".chdir"):
                found.append((node.lineno, f"calls {name}"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_the_scan_finds_what_it_forbids() -> None:
    tree = ast.parse("import os, sys\nfrom rich.console import Console\nos.chdir('/')\nsys.argv = ['x']\n")
    assert {"rich", "os", "sys"} <= imported_roots(tree)
    assert process_global_changes(tree) == ["3: calls os.chdir", "4: assigns sys.argv"]


def test_service_imports_neither_typer_nor_rich() -> None:
    for path in sorted((PACKAGE / "service").glob("*.py")):
        assert not imported_roots(ast.parse(path.read_text())) & {"typer", "rich", "click"}, path.name


def test_nothing_on_the_server_path_changes_the_folder_or_the_command_line() -> None:
    assert len(SERVER_PATH) > 4  # the scan sees the service package
    for path in SERVER_PATH:
        assert process_global_changes(ast.parse(path.read_text())) == [], path.name
