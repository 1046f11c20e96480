"""The code's shape, kept: no import cycle, no module over 400 lines (outside the benchmark
and the dev tools), no function over 60 lines, and a code layout page (docs/layout.md) that
names every module."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests import python_source

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "core",
    "resources",
    "sync",
    "assets",
    "pipelines",
    "simulator",
    "benchmarks",
    "devtools",
)
UNBOUNDED_MODULES = ("benchmarks", "devtools")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Every non-test module, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports, anywhere in it (inside functions and
    ``TYPE_CHECKING`` blocks too: a lazy import is still a dependency)."""
    for node in ast.walk(python_source.parse(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                yield name
                break


def test_no_import_cycle() -> None:
    known = modules()
    graph = {name: set(imported(path, known)) - {name} for name, path in known.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    """The check above would fail on a real cycle (a lazy import inside a function)."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    known = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    assert list(imported(known["a"], known)) == ["b"]
    assert list(imported(known["b"], known)) == ["a"]


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        name: lines
        for name, path in modules().items()
        if not name.startswith(UNBOUNDED_MODULES)
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_longer_than_the_limit() -> None:
    long = {
        f"{name}.{node.name}": node.end_lineno - node.lineno + 1
        for name, path in modules().items()
        for node in ast.walk(python_source.parse(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long == {}


def test_the_code_layout_page_names_every_module() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text()
    rows = {
        match.group(1).rstrip("/"): match.group(2)
        for match in re.finditer(r"^\| `([\w/]+)/?` \| (.*) \|$", layout, re.MULTILINE)
    }
    missing = []
    for path in modules().values():
        relative = path.relative_to(ROOT)
        folder = str(relative.parent)
        if relative.name == "__init__.py":
            if folder not in rows:  # a package is its own row
                missing.append(folder + "/")
            continue
        mentioned = rows.get(folder, "")
        if f"`{relative.name}`" not in mentioned:
            missing.append(str(relative))
    assert missing == []


def test_a_tree_cpython_refuses_with_a_recursion_mismatch_is_built_again_in_a_fresh_thread(
    monkeypatch, tmp_path: Path
) -> None:
    import threading

    real, threads = ast.parse, []

    def flaky(source: str) -> ast.Module:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=144, after=34)")
        return real(source)

    monkeypatch.setattr(ast, "parse", flaky)
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    assert isinstance(python_source.parse(module).body[0], ast.Assign)
    assert threads[1] is not threads[0]  # the second attempt, in a thread of its own
