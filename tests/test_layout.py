"""Rules of the package's layout that a reviewer would otherwise check by hand."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "interp_utils").rglob("*.py"))
MAX_LINES = 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by concern (at most {MAX_LINES})."


def _sources():
    for path in MODULES:
        if path.name != "hooks.py":
            yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        yield path.name, "\n\n".join(line for line in code if not line.lstrip().startswith("%"))


@pytest.mark.parametrize(
    "where,source", list(_sources()), ids=lambda x: x if isinstance(x, str) and "\n" not in x else ""
)
def test_hook_names_are_built_only_in_the_hooks_module(where, source):
    """An f-string, a concatenation or a plain string literal that holds "blocks.<layer>...." belongs in
    interp_utils.core.hooks.name (docstrings may quote hook names)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    built = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if "blocks." in node.value:
                built.append(node.lineno)
            continue
        parts = []
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [side.value for side in (node.left, node.right) if isinstance(side, ast.Constant)]
        if any(isinstance(p, str) and "blocks." in p for p in parts):
            built.append(node.lineno)
    assert not built, f"{where} builds hook names at lines {built}: use interp_utils.core.hooks.name(kind, layer)."


def _imports_of(path: Path) -> set[str]:
    """The interp_utils modules a module imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("interp_utils"):
            base = node.module
            for alias in node.names:  # `from interp_utils.core import hooks` imports the module interp_utils.core.hooks
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in _MODULE_NAMES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("interp_utils")}
    return found & _MODULE_NAMES


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


_MODULE_NAMES = {_module_name(p) for p in MODULES}


def test_no_import_cycles():
    """No module imports one that imports it back, however indirectly, at the top or inside a function (the package's
    own __init__, which names every module for its short imports, aside)."""
    graph = {_module_name(p): _imports_of(p) - {"interp_utils"} for p in MODULES if _module_name(p) != "interp_utils"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if dep == module or dep not in graph:
                continue
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_layout_rules_catch_what_they_should():
    """The hook-name rule flags a plain literal, an f-string and a concatenation, and spares a docstring."""
    for source in ('x = "blocks.1.hook_resid_pre"', 'x = f"blocks.{layer}.attn"', 'x = "blocks." + str(1)'):
        with pytest.raises(AssertionError, match="builds hook names"):
            test_hook_names_are_built_only_in_the_hooks_module("example", source)
    test_hook_names_are_built_only_in_the_hooks_module("example", 'def f():\n    """Reads blocks.1.ln2."""\n')
