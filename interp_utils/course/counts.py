"""The counts the README and the index quote, taken from the lessons' own reproduction tables, never typed by hand.

    python -m interp_utils.course.reproduce --fast --model bundled          # writes reports/tables/*.json
    python -m interp_utils.course.counts reports/tables                     # records them and updates the README
    python -m interp_utils.course.counts --check                            # the README quotes the recorded file

For each lesson: findings judged with a control (and how many agree), sanity checks (and how many hold), and rows
not judged on that model. The record is for the run CI makes (fast mode, the bundled model); the test run checks
each lesson's table against it (``INTERP_EXPECTED_COUNTS``), so a changed table fails until the record is updated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from interp_utils.core.report import COUNT_KEYS, markdown_table, model_key

ROOT = Path(__file__).resolve().parents[2]
COUNTS_FILE = ROOT / "data" / "reproduction_counts.json"
README = ROOT / "README.md"
BEGIN = "<!-- counts: python -m interp_utils.course.counts -->"
END = "<!-- /counts -->"


def gather(table_dir: Path) -> dict:
    """The counts of every lesson table (``NN_*.json``) in ``table_dir``, as one record."""
    tables = [json.loads(p.read_text()) for p in sorted(Path(table_dir).glob("[0-9][0-9]_*.json"))]
    if not tables:
        raise FileNotFoundError(f"No lesson tables (NN_*.json) in {table_dir}: run the lessons with INTERP_REPORT_DIR.")
    modes = {t["mode"] for t in tables}
    if len(modes) != 1:
        raise ValueError(f"The tables in {table_dir} mix modes {sorted(modes)}; record one run.")
    old = [t["notebook"] for t in tables if "counts" not in t]
    if old:
        raise ValueError(f"Tables {old} have no counts: they were written by an older version; run them again.")
    notebooks = {
        t["notebook"]: {"model": model_key(t["model"])} | {k: t["counts"][k] for k in COUNT_KEYS} for t in tables
    }
    total = {k: sum(n[k] for n in notebooks.values()) for k in COUNT_KEYS}
    return {"mode": modes.pop(), "notebooks": notebooks, "total": total}


def markdown(record: dict) -> str:
    """The counts as a markdown table, a row per lesson and a total."""
    rows = [
        (
            name,
            n["model"],
            f"{n['findings_agree']} of {n['findings']}",
            f"{n['sanity_hold']} of {n['sanity']}",
            n["not_judged"],
        )
        for name, n in record["notebooks"].items()
    ]
    t = record["total"]
    rows.append(
        (
            "**all**",
            "",
            f"{t['findings_agree']} of {t['findings']}",
            f"{t['sanity_hold']} of {t['sanity']}",
            t["not_judged"],
        )
    )
    header = ["lesson", "model", "findings judged with a control: agree", "sanity checks: hold", "not judged"]
    return f"Recorded from a {record['mode']}-mode run on the bundled model:\n\n" + markdown_table(header, rows)


def readme_block(record: dict) -> str:
    return f"{BEGIN}\n{markdown(record)}\n{END}"


def update_readme(record: dict, readme: Path = README) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} block to write the counts into.")
    pattern = re.escape(BEGIN) + r".*?" + re.escape(END)
    readme.write_text(re.sub(pattern, lambda _: readme_block(record), text, flags=re.S))


def readme_is_current(record: dict, readme: Path = README) -> bool:
    return readme_block(record) in readme.read_text()


def load(path: Path = COUNTS_FILE) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python -m interp_utils.course.counts TABLE_DIR.")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="?", type=Path, help="the folder of tables a run wrote (INTERP_REPORT_DIR)")
    parser.add_argument("--check", action="store_true", help="only check that the README quotes the recorded counts")
    args = parser.parse_args(argv)
    if args.check:
        if not readme_is_current(load()):
            sys.exit(f"README.md does not quote {COUNTS_FILE}: run python -m interp_utils.course.counts TABLE_DIR.")
        print("README.md quotes the recorded counts.")
        return
    if args.tables is None:
        parser.error("give the folder of tables to record, or --check")
    record = gather(args.tables)
    COUNTS_FILE.write_text(json.dumps(record, indent=2) + "\n")
    update_readme(record)
    print(markdown(record))


if __name__ == "__main__":
    main()
