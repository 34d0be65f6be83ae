import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from interp_utils import colab


def test_notebooks_and_readme_match_the_one_bootstrap():
    assert colab.sync(check=True) == [], "run `python -m interp_utils.course.colab`"


def test_bootstrap_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command outside Colab"))
    exec(colab.bootstrap_cell(), {})


def test_bootstrap_on_colab_clones_installs_the_runtime_requirements_and_moves_in(tmp_path, monkeypatch):
    """The cell as Colab runs it, with stand-ins for git (copies this checkout's requirement files) and pip (records
    what it is asked to install, from where): one clone, one install of requirements.txt, nothing from the dev file."""
    root, clone, bin_dir = Path(__file__).resolve().parent.parent, tmp_path / "interp-notebooks", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/git.log\nmkdir -p "$5"\ncp {root}/requirements*.txt "$5"\n'
    )
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "$PWD $@" >> {tmp_path}/pip.log\n')
    for tool in ("git", "pip"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(colab, "CLONE", str(clone))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    moves: list[str] = []
    monkeypatch.setattr(os, "chdir", moves.append)
    monkeypatch.setattr(sys, "path", list(sys.path))
    cell = colab.bootstrap_cell("https://github.com/someone/fork")
    exec(cell, {})
    assert (tmp_path / "git.log").read_text().split() == [
        "clone",
        "--depth",
        "1",
        "https://github.com/someone/fork",
        str(clone),
    ]
    where, *args = (tmp_path / "pip.log").read_text().split()
    assert where == str(clone) and args == ["install", "-q", "-r", "requirements.txt"]
    runtime = (clone / "requirements.txt").read_text()
    assert "pytest" not in runtime and "nbmake" not in runtime and "selenium" not in runtime
    assert moves == [f"{clone}/notebooks"] and sys.path[0] == str(clone)
    exec(cell, {})  # a second run (the clone is there): no new clone, no new install
    assert len((tmp_path / "pip.log").read_text().splitlines()) == 1


def test_badges_need_a_github_url():
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        colab.badges([], "https://gitlab.com/a/b")
