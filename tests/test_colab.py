import os
import subprocess
import sys
import types

import pytest

from interp_utils import colab


def test_notebooks_and_readme_match_the_one_bootstrap():
    assert colab.sync(check=True) == [], "run `python -m interp_utils.colab`"


def test_bootstrap_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command outside Colab"))
    exec(colab.bootstrap_cell(), {})


def test_bootstrap_on_colab_clones_installs_and_moves_into_notebooks(monkeypatch):
    calls, moves = [], []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: calls.append((args, kwargs.get("cwd"))))
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    monkeypatch.setattr(os, "chdir", moves.append)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(colab.bootstrap_cell("https://github.com/someone/fork"), {})
    (clone, _), (install, cwd) = calls
    assert clone[:4] == ["git", "clone", "--depth", "1"] and clone[4] == "https://github.com/someone/fork"
    assert install[-2:] == ["-r", "requirements.txt"] and cwd == clone[5]
    assert moves == [f"{clone[5]}/notebooks"] and sys.path[0] == clone[5]


def test_badges_need_a_github_url():
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        colab.badges([], "https://gitlab.com/a/b")
