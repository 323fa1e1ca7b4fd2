"""Messages recommend only options that exist on the command that prints them (issue 32).

`infer` once told users to pass `--depth-model-dir`, an option only `controls` and `masks` have. Two checks:
- Every error line a command prints in the tests (`tests/_cli.run_cli`: the fault catalog and most CLI
  tests) names only options of that command (`error_options_problems`): exact, for every message a test
  reaches, the depth-model one included.
- Here, for every message in the source, reached by a test or not: cosmos_t2 is read (ast) for each
  `--option` a message can name, the commands that can reach the message are worked out (a call graph by
  name, resolved through each module's imports), and one of them, or the command the text names right
  before the option (`infer --model-dir`, `cosmos-t2 models check DIR --modalities`), must declare it
  (read from the Typer app's click commands). A library message is reached by several commands whose
  preconditions differ (bench --e2e runs infer's path on a folder it wrote itself), so this check cannot
  ask all of them: it catches an option that was renamed, removed or never existed.

What counts as naming an option in a message:
- an option inside prose (a string constant or f-string with a space in it) in a function, except in the
  declarations of options and apps (`typer.Option(...)`, `typer.Typer(help=...)`) and docstrings;
- `key="--option"` given to CosmosError (the error names it as the key at fault);
- an option string in a module-level table, as `MODEL_DIR_SOURCES`'s (a message built from the table names
  it), reached by the functions that read the table.
A string of no spaces in a function is an argument vector (`--untracked-files=no`, the server's `--socket`),
not a message.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer.main
from _cli import OPTION, error_options_problems, named_command

import cosmos_t2
from cosmos_t2.cli import app

PACKAGE = Path(cosmos_t2.__file__).parent
MESSAGE_CALLS = {"CosmosError", "print_error", "warn", "echo", "print", "BadParameter", "secho"}
DECLARATIONS = {"Option", "Argument", "Typer"}


@dataclass
class Node:
    """A function (with its nested functions) or a module-level name: what it can print, what it reads."""

    options: list[tuple[str, str, int]] = field(default_factory=list)  # (option, its text, line)
    refs: set[tuple[str, str]] = field(default_factory=set)  # unresolved: ("name", x) or ("attr", x)


def _text(node: ast.expr) -> str | None:
    """A string constant's text, or an f-string's with `{}` for each value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_docstring(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if not isinstance(parent, ast.Expr):
        return False
    owner = parents.get(parent)
    body = getattr(owner, "body", None)
    return bool(body) and body[0] is parent


class Module:
    """One source file: its nodes, and what its names mean (its definitions and its imports)."""

    def __init__(self, name: str, tree: ast.Module) -> None:
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.classes: dict[str, list[str]] = {}  # class -> its methods' qualnames
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name -> (module, name or None)
        for item in ast.walk(tree):
            if isinstance(item, ast.ImportFrom) and item.module and item.module.startswith("cosmos_t2"):
                for alias in item.names:
                    self.imports[alias.asname or alias.name] = (item.module, alias.name)
            elif isinstance(item, ast.Import):
                for alias in item.names:
                    if alias.name.startswith("cosmos_t2") and alias.asname:
                        self.imports[alias.asname] = (alias.name, None)
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.nodes[stmt.name] = self._read(stmt, in_function=True)
            elif isinstance(stmt, ast.ClassDef):
                methods = [s for s in stmt.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
                self.classes[stmt.name] = [f"{stmt.name}.{m.name}" for m in methods]
                for method in methods:
                    self.nodes[f"{stmt.name}.{method.name}"] = self._read(method, in_function=True)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                node = self._read(stmt, in_function=False)
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.nodes[target.id] = node

    @staticmethod
    def _read(root: ast.AST, *, in_function: bool) -> Node:
        node = Node()
        parents = {child: parent for parent in ast.walk(root) for child in ast.iter_child_nodes(parent)}
        for item in ast.walk(root):
            if isinstance(item, ast.Name):
                node.refs.add(("name", item.id))
            elif isinstance(item, ast.Attribute):
                node.refs.add(("attr", item.attr))
                if isinstance(item.value, ast.Name):
                    node.refs.add(("module_attr", f"{item.value.id}.{item.attr}"))
            text = _text(item) if isinstance(item, ast.expr) else None
            if text is None or not OPTION.search(text) or _is_docstring(item, parents):
                continue
            if isinstance(parents.get(item), ast.JoinedStr):
                continue  # a piece of an f-string: read whole as the f-string
            calls = [p for p in _ancestors(item, parents) if isinstance(p, ast.Call)]
            if any(_call_name(c) in DECLARATIONS for c in calls):
                continue
            bare = not any(c.isspace() for c in text.strip())
            as_key = isinstance(parents.get(item), ast.keyword) and parents[item].arg == "key"
            if bare and in_function and not (as_key and calls and _call_name(calls[0]) == "CosmosError"):
                continue  # an argument vector, not a message
            for match in OPTION.finditer(text):
                node.options.append((match.group(), text, getattr(item, "lineno", 0)))
        return node


def _ancestors(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> Iterator[ast.AST]:
    while node in parents:
        node = parents[node]
        yield node


def _modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = Module(name, ast.parse(path.read_text(), str(path)))
    return modules


class Graph:
    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.methods: dict[str, list[tuple[str, str]]] = {}  # method name -> its (module, qualname)s
        for module in modules.values():
            for qualname in module.nodes:
                if "." in qualname:
                    self.methods.setdefault(qualname.split(".", 1)[1], []).append((module.name, qualname))

    def _definition(self, module: str, name: str, depth: int = 0) -> list[tuple[str, str]]:
        """What `name` means in `module`: its own function, class (all methods) or constant, or an import's."""
        found = self.modules.get(module)
        if found is None or depth > 4:
            return []
        if name in found.classes:
            return [(module, q) for q in found.classes[name]]
        if name in found.nodes:
            return [(module, name)]
        if name in found.imports:
            target, attr = found.imports[name]
            if attr is None:
                return []
            if f"{target}.{attr}" in self.modules:  # `from cosmos_t2.cli import jobs`: a module
                return []
            return self._definition(target, attr, depth + 1)
        return []

    def _module_of(self, module: str, name: str) -> str | None:
        target = self.modules[module].imports.get(name)
        if target is None:
            return None
        dotted = target[0] if target[1] is None else f"{target[0]}.{target[1]}"
        return dotted if dotted in self.modules else None

    def reachable(self, root: tuple[str, str]) -> set[tuple[str, str]]:
        seen, todo = {root}, [root]
        while todo:
            module, qualname = todo.pop()
            for kind, name in self.modules[module].nodes[qualname].refs:
                if kind == "name":
                    targets = self._definition(module, name)
                elif kind == "module_attr":
                    owner, attr = name.split(".", 1)
                    other = self._module_of(module, owner)
                    targets = self._definition(other, attr) if other else []
                else:  # x.name: any method of that name, or a sibling method through self
                    targets = self.methods.get(name, [])
                for target in targets:
                    if target not in seen:
                        seen.add(target)
                        todo.append(target)
        return seen


def _commands() -> dict[str, tuple[tuple[str, str], set[str]]]:
    """Each command's path ("models check") -> (its function's node, every option it accepts)."""
    found: dict[str, tuple[tuple[str, str], set[str]]] = {}

    # typer vendors its own click (typer._click): read commands by their attributes, not click's classes
    def walk(command: Any, path: str, inherited: set[str]) -> None:
        options = inherited | {"--help"}
        for param in command.params:
            options |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip(), options)
            return
        function = getattr(command.callback, "__wrapped__", command.callback)
        found[path] = ((function.__module__, function.__qualname__), options)

    walk(typer.main.get_command(app), "", set())
    return found


def option_problems() -> list[str]:
    modules = _modules()
    graph = Graph(modules)
    commands = _commands()
    reached_by: dict[tuple[str, str], set[str]] = {}
    for command, (root, _) in commands.items():
        assert root[1] in modules[root[0]].nodes, root
        for node in graph.reachable(root):
            reached_by.setdefault(node, set()).add(command)
    anywhere = set().union(*(options for _, options in commands.values()))
    problems = []
    for module in modules.values():
        for qualname, node in module.nodes.items():
            printers = reached_by.get((module.name, qualname), set())
            for option, text, line in node.options:
                named = named_command(text, text.index(option))
                owners = {named} if named else printers
                accepted = set().union(*(commands[c][1] for c in owners)) if owners else anywhere
                if option not in accepted:
                    who = ", ".join(sorted(owners)) or "any command"
                    problems.append(f"{module.name}:{line} ({qualname}) names {option}, which {who} does not "
                                    f"have: {text!r}")  # fmt: skip
    return problems


def test_every_option_a_message_names_exists_on_a_command_that_prints_it() -> None:
    problems = option_problems()
    assert not problems, "\n".join(problems)


def test_the_scan_sees_the_messages_it_checks() -> None:
    """The scan must find the options messages do name (else an empty scan would pass everything)."""
    modules = _modules()
    named = {opt for m in modules.values() for node in m.nodes.values() for opt, _, _ in node.options}
    assert {"--text-encoder-dir", "--device", "--model-dir", "--depth-model-dir", "--offload"} <= named
    assert "--untracked-files" not in named and "--socket" not in named  # argument vectors
    graph = Graph(modules)
    root, _ = _commands()["encode-prompt"]
    reached = {opt for mod, q in graph.reachable(root) for opt, _, _ in modules[mod].nodes[q].options}
    assert "--text-encoder-dir" in reached  # encode-prompt -> encoder_for's message


def test_an_error_line_naming_an_option_its_command_lacks_is_caught() -> None:
    line = "error: Depth Anything V2 model folder does not exist (from --depth-model-dir or X)"
    assert error_options_problems(["infer", "job.json", "--tiny"], line)
    assert not error_options_problems(["controls", "job.json"], line)
    assert not error_options_problems(["--debug", "models", "check", "d"], "error: d: pass --modalities")
    assert error_options_problems(["models", "fetch", "d"], "error: see `infer --model-dirs`")
