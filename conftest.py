"""pytest runs in fast, strict mode unless told otherwise, and sorts every test into a tier.

INTERP_FAST=0 pytest runs full-size notebooks; strict mode (INTERP_STRICT=1) turns a reproduction row that
disagrees with the paper into a failing notebook.

Tiers (markers): ``unit`` is the quick tier (``pytest -m unit``); ``notebook`` executes a lesson with nbmake;
``standin`` runs a lesson on the GPT-2 stand-in; ``browser`` opens notebooks in headless Chromium; ``index`` asks the
package index; ``slow`` is a unit-level test that takes long (builds a wheel, runs a benchmark or a training run).
Plain ``pytest`` runs every tier; docs/testing.md says how long each takes. In strict mode a lesson's table must
also have the counts recorded in data/reproduction_counts.json (``INTERP_EXPECTED_COUNTS``; see
interp_utils/course/counts.py).
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("INTERP_FAST", "1")
os.environ.setdefault("INTERP_STRICT", "1")
# each lesson's table must have the counts the README and the index quote (interp_utils.course.counts)
os.environ.setdefault("INTERP_EXPECTED_COUNTS", str(Path(__file__).parent / "data" / "reproduction_counts.json"))

TIERS = ("notebook", "standin", "browser", "index", "slow")
SLOW_FILES = {"test_benchmarks.py", "test_grading_lesson.py", "test_footprint.py", "test_reproduce.py", "test_colab.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if path.suffix == ".ipynb":
            item.add_marker("notebook")
        elif path.name == "test_browser.py":
            item.add_marker("browser")
        elif path.name == "test_gpt2_standin.py" and item.name.startswith("test_notebook_runs_on_the_standin"):
            item.add_marker("standin")
        elif path.name in SLOW_FILES:
            item.add_marker("slow")
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker("unit")
