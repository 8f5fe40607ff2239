"""Monte Carlo of the eo_heterogeneity comparison at a recorded size, in parallel processes.

    python paper/eo_heterogeneity/montecarlo.py --size recorded --reps 10 --workers 2 --out DIR

runs :func:`pipeline.replicate` for ``reps`` trials (seeds ``seed .. seed + reps - 1``) of the
config section ``--size`` (``ci``, ``recorded`` or ``full``), writes ``replications.csv``,
``representations.csv`` and ``rate_choice.csv`` under ``DIR`` and prints (and writes
``DIR/results.md``) the Markdown table recorded in ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent


def _pipeline():
    from geocausal.paper_labels import load_module

    return load_module("geocausal_paper__eo_heterogeneity_mc", HERE / "pipeline.py")


def _one(args: tuple[int, dict, int]) -> pd.DataFrame:
    r, cfg, seed = args
    return _pipeline().replicate(r, cfg, seed)


def markdown(table: pd.DataFrame, choice: pd.DataFrame) -> str:
    """The per-cell table (means with Monte Carlo SEs) and the RATE-ratio choice summary."""
    lines = ["| learner | representation | cor(pred, true CATE) | AUTOC | RATE ratio | "
             "AUTOC detect rate | BLP detect rate | reps |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.learner} | {row.representation} | {row.cor_truth:.3f} "
                     f"({row.cor_truth_mcse:.3f}) | {row.autoc:.3f} ({row.autoc_mcse:.3f}) | "
                     f"{row.autoc_ratio:.2f} | {row.autoc_detect_rate:.2f} | "
                     f"{row.blp_detect_rate:.2f} | {row.reps} |")
    if len(choice):
        picks = (choice["chosen_learner"] + "/" + choice["chosen_representation"]).value_counts()
        oracle = (choice["oracle_learner"] + "/" + choice["oracle_representation"]).value_counts()
        n = len(choice)
        se = choice["chosen_cor_truth"].std(ddof=1) / n ** 0.5 if n > 1 else float("nan")
        lines += ["", f"RATE-ratio choice over {n} replications: "
                  + ", ".join(f"{k} {v}" for k, v in picks.items())
                  + f"; mean cor(chosen, true CATE) {choice['chosen_cor_truth'].mean():.3f} "
                  f"({se:.3f}); oracle (best cor, needs the truth): "
                  + ", ".join(f"{k} {v}" for k, v in oracle.items())
                  + f", mean {choice['oracle_cor_truth'].mean():.3f}; mean regret "
                  f"{choice['regret'].mean():.3f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=("ci", "recorded", "full"), default="recorded")
    ap.add_argument("--reps", type=int, default=None, help="replications (default: config)")
    ap.add_argument("--workers", type=int, default=1, help="processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    cfg = yaml.safe_load((HERE / "config.yaml").read_text())[a.size]
    reps = int(a.reps if a.reps is not None else cfg["reps"])
    if reps < 1 or a.workers < 1:
        raise SystemExit(f"--reps {reps} and --workers {a.workers} must be at least 1")
    t0 = time.time()
    jobs = [(r, cfg, a.seed) for r in range(reps)]
    if a.workers == 1:
        parts = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(a.workers) as ex:
            parts = list(ex.map(_one, jobs))
    reps_df = pd.concat(parts, ignore_index=True)
    table, choice = _pipeline().write_comparison(reps_df, a.out)
    md = (f"Size `{a.size}`: n_units {cfg['n_units']}, grid {cfg['grid']}, {reps} replications "
          f"(seeds {a.seed}..{a.seed + reps - 1}), learners {cfg['learners']}, encoder "
          f"{cfg['encoder']}, multiscale {cfg['multiscale']}, n_splits {cfg['n_splits']}, "
          f"n_boot {cfg['n_boot']}; {time.time() - t0:.0f} s with {a.workers} workers. "
          f"Means over replications, Monte Carlo SEs in brackets.\n\n"
          + markdown(table, choice) + "\n")
    (a.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
