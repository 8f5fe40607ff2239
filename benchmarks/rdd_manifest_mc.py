"""Monte Carlo: the manifest route of the distributional RD on rasters recovers the planted jump.

Each replication writes the border study of :func:`geocausal.datasets.boundary.border_ndvi_study`
with its own seed (new unit positions and pixel noise), loads it through its manifest
(``gc.load_study``: signed distance to the border layer, NDVI pixel distributions in buffers
clipped to each unit's side, or not: ``--no-clip`` rows), runs ``gc.rdd("ndvi ~ 1", ...,
weights="ndvi_weight")`` on the levels of :data:`~geocausal.datasets.boundary.TRUTH_LEVELS` and
records, against the exact truth, the bias, RMSE, the pointwise 95% coverage per level and the
coverage of the 95% uniform band. Each fit is done twice: with the default ``vcov="hetero"``
and clustered on the zones' overlap groups (``vcov={"cluster": "ndvi_overlap_group"}``:
connected components of the graph of zones that share pixels). ``--spacing M`` places the
units at least M metres apart (``--spacing 140`` with the 60 m buffers and 10 m pixels: no two
zones share a pixel), to check that the overlap is what the clustering corrects.

Usage (the recorded table in ``rdd_manifest_mc.md`` is the full size)::

    python benchmarks/rdd_manifest_mc.py --reps 500 --workers 16 --out benchmarks/rdd_manifest_mc.md
    python benchmarks/rdd_manifest_mc.py --reps 4 --workers 2       # a smoke run
    python benchmarks/rdd_manifest_mc.py --reps 500 --workers 16 --clip-only --spacing 140

Every replication has its own seed (``seed * 1_000_003 + rep``); the Monte Carlo standard error
of a coverage near 0.95 is ``sqrt(.95 * .05 / reps)`` (0.0097 at 500 reps).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.parallel import ScriptParser, add_parallel_arguments, parallel_map


def one_replication(args: tuple) -> list[dict]:
    """One study, fitted with and without clipping: one row per (clip, quantile)."""
    import yaml

    import geocausal as gc
    from geocausal.data.study import load_study
    from geocausal.datasets.boundary import TRUTH_LEVELS, border_ndvi_study

    rep, seed, n_boot, n_units, clips, spacing = args
    s = seed * 1_000_003 + rep
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = border_ndvi_study(Path(tmp) / "study", n_units=n_units, seed=s,
                                  min_spacing_m=spacing)
        truth = np.array([study.truth[f"qte_{round(100 * q)}"] for q in TRUTH_LEVELS])
        for clip in clips:
            m = yaml.safe_load(study.manifest_path.read_text())
            m["distributions"][0]["clip_to_side"] = clip
            path = Path(tmp) / "study" / f"m_{clip}.yaml"
            path.write_text(yaml.safe_dump(m))
            tab = load_study(path, features="none").table
            groups = tab["ndvi_overlap_group"].value_counts()
            shared = float(groups[groups > 1].sum() / len(tab))
            for vcov in ("hetero", "cluster"):
                v = "hetero" if vcov == "hetero" else {"cluster": "ndvi_overlap_group"}
                est = gc.rdd("ndvi ~ 1", tab, running="dist_border", weights="ndvi_weight",
                             q_grid=list(TRUTH_LEVELS), inference={"n_boot": n_boot}, seed=s,
                             vcov=v)
                c = est.curve
                uni = bool(np.all((c.uniform_low <= truth) & (truth <= c.uniform_high)))
                mean_cov = bool(abs(est.params["mean"] - study.truth["mean"])
                                <= 1.959964 * est.std_errors["mean"])
                for k, q in enumerate(TRUTH_LEVELS):
                    rows.append({"clip": clip, "vcov": vcov, "quantile": q,
                                 "error": c.estimate[k] - truth[k], "se": c.std_error[k],
                                 "covered": bool(c.conf_low[k] <= truth[k] <= c.conf_high[k]),
                                 "uniform_covered": uni, "mean_covered": mean_cov,
                                 "shared_zone_share": shared,
                                 "mean_error": float(est.params["mean"] - study.truth["mean"])})
    return rows


def run(reps: int, workers: int, seed: int = 0, n_boot: int = 500, n_units: int = 300,
        clips=(True, False), scheduler: str | None = None, spacing: float = 0.0
        ) -> pd.DataFrame:
    """Table: one row per (clip, vcov, quantile)."""
    jobs = [(r, seed, n_boot, n_units, tuple(clips), spacing) for r in range(reps)]
    out = parallel_map(one_replication, jobs, workers=workers, scheduler=scheduler,
                       desc="border study Monte Carlo")
    df = pd.DataFrame([row for rows in out for row in rows])
    tab = (df.groupby(["clip", "vcov", "quantile"], sort=False)
           .agg(bias=("error", "mean"), rmse=("error", lambda e: float(np.sqrt(np.mean(e ** 2)))),
                sd=("error", "std"), mean_se=("se", "mean"), coverage=("covered", "mean"),
                uniform_coverage=("uniform_covered", "mean"),
                mean_effect_bias=("mean_error", "mean"), mean_coverage=("mean_covered", "mean"),
                shared_zones=("shared_zone_share", "mean"), reps=("error", "size"))
           .reset_index())
    tab["se_over_sd"] = tab.mean_se / tab.sd
    tab["mc_se_bias"] = tab.sd / np.sqrt(tab.reps)
    return tab


def to_markdown(tab: pd.DataFrame) -> str:
    """A GitHub markdown table (floats with 4 decimals)."""
    from geocausal.results.table import pipe_table

    return pipe_table(tab, digits=4)


def main(argv: list[str] | None = None) -> None:
    ap = ScriptParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    add_parallel_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--clip-only", action="store_true", help="skip the unclipped fits")
    ap.add_argument("--spacing", type=float, default=0.0,
                    help="minimum distance (m) between units; 140: no zones share a pixel")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file to write the table to (else printed)")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    tab = run(a.reps, a.workers, a.seed, a.n_boot, a.units,
              (True,) if a.clip_only else (True, False), scheduler=a.scheduler,
              spacing=a.spacing)
    secs = time.perf_counter() - t0
    head = (f"reps={a.reps} seed={a.seed} n_boot={a.n_boot} units={a.units} "
            f"spacing={a.spacing:g} m "
            f"({secs:.0f} s on {a.workers} workers)\n\n")
    md = to_markdown(tab)
    if a.out is None:
        print(head + md)
    else:
        a.out.write_text("# Border NDVI study through the manifest: Monte Carlo\n\n"
                         "`python benchmarks/rdd_manifest_mc.py` (see its docstring). clip: "
                         "zones clipped to the unit's side of the border (the default) or not."
                         "\n\n" + head + md + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
