"""Write the recorded benchmark rows as one table in ``benchmarks/results.md`` and print it.

``make bench`` runs every benchmark script (each records its rows with
``benchmarks/_report.py``), then this collector. The table sits between two marker comments
at the top of ``results.md``; the sections below it (notes, older tables) are kept as they are.

    .venv/bin/python benchmarks/collect.py [--rows benchmarks/rows.jsonl] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import ROWS, load_rows, markdown_table  # noqa: E402

START = "<!-- bench-table:start (written by benchmarks/collect.py; edit rows.jsonl) -->"
END = "<!-- bench-table:end -->"
INTRO = ("Ratio = the comparator's time over geocausal's (above 1: geocausal is faster), "
         "measured in the same run on the same machine.")


def write(rows_path: Path, out: Path) -> str:
    """Insert (or replace) the table in ``out``; return the table."""
    table = markdown_table(load_rows(rows_path))
    block = f"{START}\n## All benchmarks (one row per work, latest run)\n\n{INTRO}\n\n{table}\n{END}"
    text = out.read_text() if out.exists() else "# Benchmark results\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        lines = text.splitlines()
        first = 1 if lines and lines[0].startswith("# ") else 0
        text = "\n".join(lines[:first] + ["", block, ""] + lines[first:]) + "\n"
    out.write_text(text)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=ROWS)
    ap.add_argument("--out", type=Path, default=ROWS.parent / "results.md")
    a = ap.parse_args(argv)
    print(write(a.rows, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
