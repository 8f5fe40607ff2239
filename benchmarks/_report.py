"""One way for every benchmark script to report a row of ``benchmarks/results.md``.

A script calls :func:`record` once per measured comparison; the row (work, comparator, ratio,
result, date, machine) replaces any earlier row of the same ``work`` in
``benchmarks/rows.jsonl``. ``benchmarks/collect.py`` (run by ``make bench`` after the scripts)
writes the rows as one table at the top of ``benchmarks/results.md`` and prints it.

``ratio`` is always a speed-up: the comparator's time over geocausal's time (or geocausal's
throughput over the comparator's), so above 1 means geocausal is faster. Rows without a
comparator (the scale benchmark) leave it empty and say what was measured in ``result``.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> row = record("AIPW, 100k units", "DoubleMLIRM", speedup(1.0, 2.0), result="identical",
...              path=p)
[recorded] AIPW, 100k units vs DoubleMLIRM: ratio 2.0 identical
>>> row["ratio"], load_rows(p)[0]["comparator"]
(2.0, 'DoubleMLIRM')
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = HERE / "rows.jsonl"
COLUMNS = ("work", "comparator", "ratio", "result", "date", "machine")


def speedup(ours_s: float, peer_s: float) -> float:
    """Comparator time over geocausal time (> 1: geocausal faster).

    Examples
    --------
    >>> speedup(2.0, 3.0)
    1.5
    """
    if not ours_s > 0 or not peer_s > 0:
        raise ValueError(f"times must be positive, got {ours_s!r} and {peer_s!r}")
    return float(peer_s) / float(ours_s)


def machine() -> str:
    """A short description of this machine: CPU model, cores, memory and an accelerator."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = os.environ.get("GEOCAUSAL_BENCH_GPU", "")
    return f"{cpu}, {cores} cores{mem}" + (f", {gpu}" if gpu else "")


def load_rows(path: Path | str = ROWS) -> list[dict]:
    """The recorded rows, in the order they were first recorded."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(work: str, comparator: str | None, ratio: float | None, *, result: str = "",
           path: Path | str = ROWS, date: str | None = None) -> dict:
    """Record (or replace) the row of ``work`` and print it.

    Parameters
    ----------
    work
        What was measured, with its size (``"AIPW, 100,000 units"``).
    comparator
        The peer or careful alternative timed in the same run (None: no comparator).
    ratio
        Speed-up against the comparator (see :func:`speedup`), or None.
    result
        Anything else worth a glance: absolute times, peak memory, differences.
    """
    if ratio is not None and not (isinstance(ratio, int | float) and ratio == ratio):
        raise ValueError(f"ratio must be a number or None, got {ratio!r}")
    row = {"work": str(work), "comparator": comparator or "-",
           "ratio": None if ratio is None else round(float(ratio), 3), "result": result,
           "date": date or _dt.date.today().isoformat(), "machine": machine()}
    import fcntl
    import tempfile

    path = Path(path)
    lock_file = Path(tempfile.gettempdir()) / "geocausal-bench-rows.lock"
    with open(lock_file, "w") as lock:  # scripts may record at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = load_rows(path)
        rows = [r for r in old if r["work"] != row["work"]]
        works = [r["work"] for r in old]
        rows.insert(works.index(row["work"]) if row["work"] in works else len(rows), row)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(path)
    print(f"[recorded] {row['work']} vs {row['comparator']}: ratio {row['ratio']} {result}")
    return row


def markdown_table(rows: list[dict]) -> str:
    """The rows as one Markdown table.

    Examples
    --------
    >>> print(markdown_table([{"work": "w", "comparator": "c", "ratio": 1.5, "result": "",
    ...                        "date": "2026-01-01", "machine": "m"}]).splitlines()[2])
    | w | c | 1.50x |  | 2026-01-01 | m |
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        cells = [r["work"], r["comparator"], ratio, r.get("result", ""), r["date"],
                 r["machine"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
