"""The package's import graph: no circles, and every import goes down the data flow.

Walks every module of `cosmos_t2` with `ast`, taking imports at module level and inside functions
(those are still edges at run time), but not those under `if TYPE_CHECKING:` (never executed).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cosmos_t2"

# Lowest first. A module may import its own package and any package of a lower layer.
LAYERS: list[set[str]] = [
    {
        "__init__",
        "errors",
        "atomic",
        "destination",
        "reproducible",
        "stable_safetensors",
    },  # foundation: version, the one error type,
    # atomic writes, the CPU / encoder pins, safetensors files with stable bytes
    {"video"},  # media I/O
    {"model"},  # network, VAE, encoders, checkpoints
    {"controls"},  # the modality registry, control videos, masks
    {"jobspec"},  # job specs (read the registry for each modality's keys)
    {"sampling"},  # samplers
    {"distributed"},  # ranks, sequence-parallel attention, torchrun
    {"weights"},  # the model folder: locate, identify, official files, hub, hashes
    {"runtime"},  # build the net, memory plan, residency, model pool, acceleration, software provenance
    {"job"},  # one job: inputs -> conditioning -> diffuse per chunk -> decode -> outputs, its record
    {"service"},  # many jobs: a batch in one process, the server
    {"workflow"},  # the sweep planner
    {"report"},  # the HTML report and its metrics
    {"bench"},  # benchmarks
    {"cli"},  # the Typer app
    {"worker"},  # the torchrun worker: the CLI as one rank
]
LAYER_OF = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from pkg import name` counts `pkg.name` when that is
    a module, else `pkg`)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.split(".")[0] == "cosmos_t2")
            elif node.module and node.module.split(".")[0] == "cosmos_t2" and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in known else node.module)
        graph[name] = {e for e in edges if e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def package_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_the_walk_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # the CLI imports its commands' libraries inside the command functions (to keep --help light)
    assert "cosmos_t2.job.run" in graph["cosmos_t2.service.infer"]
    assert "cosmos_t2.jobspec.load" in graph["cosmos_t2.cli.stages"]


def test_a_cycle_is_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_every_package_has_a_layer() -> None:
    missing = {package_of(m) for m in modules()} - set(LAYER_OF)
    assert not missing, f"add these to LAYERS: {sorted(missing)}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_go_down_the_data_flow(module: str) -> None:
    own = LAYER_OF[package_of(module)]
    upward = [
        dep
        for dep in sorted(import_graph()[module])
        if package_of(dep) != package_of(module) and LAYER_OF[package_of(dep)] > own
    ]
    assert not upward, f"{module} imports {upward}, above it"


def test_project_imports_inside_functions_say_why() -> None:
    """An import of the project inside a function is only for a light CLI start (cosmos_t2/cli/, whose command
    bodies import their library: the package docstring says so) and must otherwise carry a reason."""
    unexplained = []
    for name, path in modules().items():
        if name.startswith("cosmos_t2.cli"):
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in _imports(func):
                is_ours = (
                    isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cosmos_t2")
                ) or (
                    isinstance(node, ast.Import) and any(a.name.startswith("cosmos_t2") for a in node.names)
                )
                if is_ours and "#" not in lines[node.lineno - 1] and "#" not in lines[node.lineno - 2]:
                    unexplained.append(f"{name}:{node.lineno}")
    assert not unexplained, f"project imports inside functions with no reason: {unexplained}"
