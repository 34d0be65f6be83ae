"""Colab and Binder from one place: the repository URL, the bootstrap cell every notebook opens with, the badges.

Every notebook's first code cell is :func:`bootstrap_cell` and the README's badges come from :func:`badges`;
``python -m interp_utils.course.colab`` writes both and ``--check`` (run by the tests) fails when either has drifted.
To publish the suite somewhere else, change ``REPO_URL`` here and run the command once.

On Colab the cell clones the repository, installs ``requirements.txt`` (what the notebooks need at run time, not
the test tools of ``requirements-dev.txt``; its ``torch>=2.4`` keeps Colab's CUDA torch, so the notebooks use the
GPU) and moves into the clone's ``notebooks/``; anywhere else it does nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from interp_utils.course.reproduce import NOTEBOOK_DIR, shipped_notebooks

# A PLACEHOLDER: the suite has no public address yet. Set the real one here and run `python -m
# interp_utils.course.colab`.
REPO_URL = "https://github.com/interp-notebooks/interp-notebooks"
BRANCH = "main"
CLONE = "/content/interp-notebooks"  # where the set-up cell clones the suite on Colab
ROOT = NOTEBOOK_DIR.parent
MARK = "# Colab set-up"
BADGES_START, BADGES_END = "<!-- badges: python -m interp_utils.course.colab -->", "<!-- /badges -->"


# the set-up command, an f-string in the cell: REPO and CLONE are the cell's variables
SETUP = "[ -d {CLONE} ] || (git clone --depth 1 {REPO} {CLONE} && cd {CLONE} && pip install -q -r requirements.txt)"


def bootstrap_cell(repo_url: str = REPO_URL) -> str:
    """The first code cell of every notebook: installs the suite on Colab, a no-op elsewhere."""
    return f'''{MARK} (does nothing elsewhere). Written by `python -m interp_utils.course.colab`: edit it there.
# On Colab: clone the suite, install requirements.txt (its run-time pins; Colab's CUDA torch is kept), move in.
import os
import subprocess
import sys

REPO, CLONE = "{repo_url}", "{CLONE}"
if "google.colab" in sys.modules:
    cmd = f"{SETUP}"
    subprocess.run(cmd, shell=True, check=True), sys.path.insert(0, CLONE), os.chdir(f"{{CLONE}}/notebooks")'''


def _github_path(repo_url: str) -> str:
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?/?", repo_url)
    if not match:
        raise ValueError(f"REPO_URL must look like https://github.com/OWNER/NAME, got {repo_url!r}.")
    return match.group(1)


def badges(notebooks: list[Path], repo_url: str = REPO_URL) -> str:
    """README lines: a Binder badge (JupyterLab on the index), and per notebook a Colab badge for it and one for
    its learner copy (answers removed) where it has one."""
    repo = _github_path(repo_url)
    binder = f"https://mybinder.org/v2/gh/{repo}/{BRANCH}?urlpath=lab/tree/notebooks/00_index.ipynb"
    lines = [
        BADGES_START,
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) (JupyterLab on the index, CPU)",
        "",
        "| notebook | Colab (GPU optional) | exercises: the learner copy, answers removed |",
        "|---|---|---|",
    ]
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    for path in notebooks:
        colab = f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/notebooks/{{}}"
        learner = path.with_name(f"{path.stem}_exercises.ipynb")
        copy = f"[![Open In Colab]({badge})]({colab.format(learner.name)})" if learner.exists() else "—"
        lines.append(f"| `{path.name}` | [![Open In Colab]({badge})]({colab.format(path.name)}) | {copy} |")
    return "\n".join(lines + [BADGES_END])


def _collapsed(cell) -> bool:
    return cell.metadata.get("jupyter", {}).get("source_hidden", False)


def sync(check: bool = False, readme: Path = ROOT / "README.md") -> list[str]:
    """Write the bootstrap cell into every notebook and the badges into the README; with ``check``, only list
    what would change."""
    stale, cell = [], bootstrap_cell()
    for path in shipped_notebooks():
        nb = nbformat.read(path, as_version=4)
        first = next((c for c in nb.cells if c.cell_type == "code"), None)
        if first is None or (first.source == cell and _collapsed(first)):  # no code (the index), or current
            continue
        stale.append(path.name)
        if not check:
            if not first.source.startswith(MARK):
                first = nbformat.v4.new_code_cell(id="colab-setup")
                nb.cells.insert(next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"), first)
            first.source = cell
            first.metadata.setdefault("jupyter", {})["source_hidden"] = True  # set-up, not lesson: shown folded
            nbformat.write(nb, path)
    text = readme.read_text()
    if BADGES_START not in text or BADGES_END not in text:
        raise ValueError(f"{readme} needs the lines {BADGES_START} and {BADGES_END} where the badges go.")
    before, rest = text.split(BADGES_START, 1)
    after = rest.split(BADGES_END, 1)[1]
    updated = before + badges(shipped_notebooks()) + after
    if updated != text:
        stale.append(readme.name)
        if not check:
            readme.write_text(updated)
    return stale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    args = parser.parse_args(argv)
    stale = sync(check=args.check)
    if stale and args.check:
        print(f"Out of date: {', '.join(stale)}. Run `python -m interp_utils.course.colab`.", file=sys.stderr)
        sys.exit(1)
    print(f"Updated: {', '.join(stale)}." if stale else "Everything is up to date.")


if __name__ == "__main__":
    main()
