"""Rules of the package's layout that a reviewer would otherwise check by hand."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "interp_utils").rglob("*.py"))
MAX_LINES = 450


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
    """An f-string or a concatenation that builds "blocks.<layer>...." belongs in interp_utils.hooks.name."""
    built = []
    for node in ast.walk(ast.parse(source)):
        parts = []
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [side.value for side in (node.left, node.right) if isinstance(side, ast.Constant)]
        if any(isinstance(p, str) and "blocks." in p for p in parts):
            built.append(node.lineno)
    assert not built, f"{where} builds hook names at lines {built}: use interp_utils.hooks.name(kind, layer)."
