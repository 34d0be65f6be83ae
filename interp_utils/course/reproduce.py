"""One command to reproduce the suite: run every notebook headless, in order, and gather the reproduction tables.

    python -m interp_utils.course.reproduce                                # full mode, GPT-2 small where it loads
    python -m interp_utils.course.reproduce --fast --model bundled         # what CI checks, offline, a few minutes
    python -m interp_utils.course.reproduce --only 01 04 --out my-report

Writes OUT/notebooks/*.ipynb (executed, with outputs), OUT/report.md and OUT/report.html: each notebook's table
(paper value, measured value, whether they agree), model, mode and time taken. A notebook that raises stops the
run with its name, the cell's number and first line, and the error; the report still covers what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from tqdm.auto import tqdm

from interp_utils.core.report import COUNT_KEYS, ReproductionTable, Row, counts_sentence, markdown_table

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


@dataclass
class Result:
    notebook: str
    seconds: float
    table: dict | None  # the JSON the notebook's ReproductionTable.show() wrote, if it got that far
    error: str | None = None


def shipped_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """Every notebook the suite ships, sorted: the index, the lessons, the template (learner copies left out)."""
    return [p for p in sorted(directory.glob("*.ipynb")) if not p.stem.endswith("_exercises")]


def find_notebooks(only: list[str] | None = None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered lessons in order (not the 00 index); ``only`` keeps those whose name starts so."""
    paths = [p for p in shipped_notebooks(directory) if fnmatch(p.name, "[0-9][0-9]_*") and p.name[:3] != "00_"]
    if not paths:
        raise FileNotFoundError(f"No numbered notebooks (01_*.ipynb, ...) in {directory}.")
    if only:
        unknown = [o for o in only if not any(p.name.startswith(o) for p in paths)]
        if unknown:
            raise ValueError(f"No notebook starts with {unknown}; choose from {[p.name for p in paths]}.")
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    return paths


def run_notebook(path: Path, out_dir: Path, table_dir: Path, timeout: int = 3600, progress: bool = True) -> Result:
    """Execute one notebook (cell by cell, with a progress bar) and save it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    bar = tqdm(total=sum(c.cell_type == "code" for c in nb.cells), desc=path.stem, disable=not progress, leave=False)
    current = {"index": -1}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=lambda cell_index, **_: current.update(index=cell_index),
        on_cell_executed=lambda **_: bar.update(1),
    )
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except Exception as exc:  # an error in a cell, a cell past its timeout, a dead kernel
        name = getattr(exc, "ename", type(exc).__name__) if isinstance(exc, CellExecutionError) else type(exc).__name__
        value = exc.evalue if isinstance(exc, CellExecutionError) else str(exc).strip().splitlines()[-1:]
        index = current["index"]
        where = "before any cell ran"
        if index >= 0:
            lines = nb.cells[index].source.strip().splitlines()
            where = f"cell {index + 1} of {len(nb.cells)} ({lines[0] if lines else ''!r})"
        error = (
            f"{path.name}: {where} raised {name}: {value if isinstance(value, str) else ''.join(value)}. "
            f"The executed notebook with the traceback is {out_dir / path.name}."
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    table_file = table_dir / f"{path.stem}.json"
    table = json.loads(table_file.read_text()) if table_file.exists() else None
    return Result(path.stem, seconds, table, error)


def report_markdown(results: list[Result], mode: str, model: str) -> str:
    """The report: a summary line per notebook, then each notebook's reproduction table."""
    total = sum(r.seconds for r in results)
    lines = [
        "# interp-notebooks: reproduction report",
        "",
        f"Mode: **{mode}**. Model asked for: **{model}**. Written {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{len(results)} notebook(s), {total / 60:.1f} minutes in all.",
        "",
    ]
    summary, totals = [], dict.fromkeys(COUNT_KEYS, 0)
    for r in results:
        record = r.table or {}
        table = _table(record) if r.table else None
        counts = table.counts() if table else None
        for key in totals:
            totals[key] += counts[key] if counts else 0
        status = "**failed**" if r.error else ("no table" if r.table is None else "ran")
        peak = record.get("peak_gpu_bytes")
        memory = f"{peak / 2**30:.2f} GiB" if peak is not None else "—"
        judged = ("—", "—", "—")
        if counts:
            judged = (
                f"{counts['findings_agree']} of {counts['findings']}",
                f"{counts['sanity_hold']} of {counts['sanity']}",
                str(counts["not_judged"]),
            )
        row = (r.notebook, record.get("model", "—"), record.get("device", "—"), f"{r.seconds:.0f} s", memory, *judged)
        summary.append((*row, status))
    header = ["notebook", "model", "device", "time", "peak GPU memory", "findings with a control: agree"]
    header += ["sanity checks: hold", "not judged", "status"]
    lines.append(markdown_table(header, summary))
    lines += ["", "In all: " + counts_sentence(totals, "on the model they ran on")]
    for r in results:
        lines += ["", f"## {r.notebook}", ""]
        if r.error:
            lines += [f"**Failed.** {r.error}", ""]
        if r.table:
            lines += [
                _table(r.table).markdown(),
                "",
                f"Model: {r.table['model']}. Mode: {r.table['mode']}. Time: {r.seconds:.0f} s.",
            ]
    return "\n".join(lines) + "\n"


def _table(record: dict) -> ReproductionTable:
    return ReproductionTable(record["notebook"], record["model"], [Row(**row) for row in record["rows"]])


def report_html(markdown: str) -> str:
    import mistune

    body = mistune.create_markdown(plugins=["table"])(markdown)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}"
        "th{background:#f4f4f4}"
    )
    head = f"<meta charset='utf-8'><title>interp-notebooks: reproduction report</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def reproduce(
    out: Path,
    fast: bool,
    model: str,
    only: list[str] | None = None,
    strict: bool = False,
    timeout: int = 3600,
    directory: Path = NOTEBOOK_DIR,
    progress: bool = True,
    keep_going: bool = False,
) -> list[Result]:
    """Run the notebooks in order into ``out``; raise NotebookFailed (after writing the report) if one breaks,
    at once or, with ``keep_going``, after the rest have run."""
    paths = find_notebooks(only, directory)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    table_dir = out / "tables"
    mode = "fast" if fast else "full"
    results: list[Result] = []
    env = {"INTERP_FAST": str(int(fast)), "INTERP_MODEL": model, "INTERP_STRICT": str(int(strict))}
    with mock.patch.dict(os.environ, env | {"INTERP_REPORT_DIR": str(table_dir)}):  # the kernels inherit these
        for path in tqdm(paths, desc=f"notebooks ({mode} mode)", disable=not progress):
            results.append(run_notebook(path, out / "notebooks", table_dir, timeout, progress))
            if results[-1].error and not keep_going:
                break
    markdown = report_markdown(results, mode, model)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(report_html(markdown))
    errors = [r.error for r in results if r.error]
    if errors:
        raise NotebookFailed(" ".join(errors))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--fast", action="store_true", help="fast mode: small step counts (as the tests run)")
    speed.add_argument("--full", action="store_true", help="full mode: the paper-sized runs (the default)")
    parser.add_argument("--model", default="gpt2", help="'gpt2' (falls back to the bundled model offline) or 'bundled'")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only the notebooks whose names start so, e.g. 01 04")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the notebooks and report go")
    parser.add_argument("--strict", action="store_true", help="a finding that does not reproduce fails its notebook")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    parser.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after one fails")
    args = parser.parse_args(argv)
    try:
        results = reproduce(
            args.out, args.fast, args.model, args.only, args.strict, args.timeout, keep_going=args.keep_going
        )
    except (NotebookFailed, FileNotFoundError, ValueError) as exc:
        print(f"\nreproduce: {exc}\nReport so far: {args.out / 'report.md'}", file=sys.stderr)
        sys.exit(1)
    print(f"Ran {len(results)} notebook(s) in {sum(r.seconds for r in results) / 60:.1f} minutes.")
    print(f"Report: {args.out / 'report.md'} and report.html; executed notebooks in {args.out / 'notebooks'}.")


if __name__ == "__main__":
    main()
