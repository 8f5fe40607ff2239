"""The Fuhr-Papies baseline cell (structure C, u-shaped, N = 500, T = 10): medians per approach
next to the paper's Fig. 4F, coverage of the 95% interval, and the dummies / CRE timing ratio.

Runs :func:`pipeline.run` with the ``paper_cell`` section of ``config.yaml`` (boosting close to
the paper's XGBoost, every DML approach including unit dummies, and the linear baselines OLS,
POLS, FE and the oracle FE), then writes a markdown table.

Usage (the lead's full size, 16 cores)::

    python -m paper.dml_panel.paper_cell --datasets 100 --workers 16 --out /tmp/dml_cell \\
        --md paper/dml_panel/PAPER_CELL.md

and a small run on two cores::

    python -m paper.dml_panel.paper_cell --datasets 6 --workers 2 --out /tmp/dml_cell_small
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ORDER = ["oracle_fe", "cre", "cre_cp", "fd", "dummies", "late", "pooled", "within", "fe",
         "pols", "ols"]
PAPER_NAMES = {"oracle_fe": "oracle", "cre": "CRE", "dummies": "dummies", "late": "late FE",
               "pooled": "pooled", "within": "early FE", "fe": "linear FE", "pols": "POLS",
               "ols": "OLS"}


def _pipeline():
    """The pipeline as ``paper.dml_panel.pipeline`` (Dask workers import it by that name;
    run this script with ``python -m`` from the repository root)."""
    root = str(HERE.parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("paper.dml_panel.pipeline")


def cell_table(reps: pd.DataFrame, paper: dict[str, float], truth: float = 1.0) -> pd.DataFrame:
    """One row per approach: median and its MC SE (robust spread), the paper's median and the
    z of the difference, coverage of the 95% interval with its binomial MC SE, seconds."""
    rows = []
    for a in [a for a in ORDER if a in set(reps.approach)]:
        g = reps[reps.approach == a]
        e, se = g["estimate"].to_numpy(), g["std_error"].to_numpy()
        n = e.size
        med = float(np.median(e))
        mcse = 1.2533 * 1.4826 * float(np.median(np.abs(e - med))) / np.sqrt(n)
        cov = float(np.mean(np.abs(e - truth) <= 1.96 * se))
        ref = paper.get(a, np.nan)
        rows.append({"approach": a, "paper_name": PAPER_NAMES.get(a, a), "datasets": n,
                     "median": med, "median_mcse": mcse, "paper_median": ref,
                     "z_vs_paper": (med - ref) / mcse if mcse > 0 else np.nan,
                     "coverage": cov, "coverage_mcse": float(np.sqrt(cov * (1 - cov) / n)),
                     "seconds": float(g["seconds"].mean())})
    return pd.DataFrame(rows)


def to_markdown(tab: pd.DataFrame) -> str:
    """A GitHub markdown table (floats with 3 decimals)."""
    from geocausal.results.table import pipe_table

    return pipe_table(tab, digits=3)


def main(argv: list[str] | None = None) -> None:
    from geocausal.parallel import ScriptParser, worker_count

    ap = ScriptParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--workers", type=worker_count, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="folder for the pipeline outputs")
    ap.add_argument("--md", type=Path, default=None, help="markdown file to write")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import yaml

    pipe = _pipeline()
    t0 = time.perf_counter()
    pipe.run(False, a.out, seed=a.seed, size="paper_cell", n_datasets=a.datasets,
             workers=a.workers)
    wall = time.perf_counter() - t0
    reps = pd.read_csv(a.out / "tables" / "replications.csv")
    paper = yaml.safe_load((HERE / "config.yaml").read_text())["paper_medians"]
    tab = cell_table(reps, paper)
    t = tab.set_index("approach")["seconds"]
    ratio = float(t["dummies"] / t["cre"]) if {"dummies", "cre"} <= set(t.index) else np.nan
    head = (f"structure C, u-shaped, N = 500, T = 10; {a.datasets} datasets, seed {a.seed}, "
            f"boosting learners, 5 unit folds; wall {wall:.0f} s on {a.workers} workers; "
            f"dummies / CRE time ratio {ratio:.1f} (paper ~40)\n\n")
    md = head + to_markdown(tab) + "\n"
    if a.md is not None:
        a.md.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
