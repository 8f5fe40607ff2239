"""Scale: extract -> embed -> AIPW with image features, wall time and peak RSS per step.

For each size (default 1,000, 3,000 and 10,000 units x 4 periods x 64x64 px x 6 bands: the
China/World Bank paper's scale, 3.9 GB of float32 chips at 10,000 units) the script writes a
study (6-band uint16 GeoTIFFs, as ``benchmarks/extract.py``; not timed), then runs each step in
its own process so that its peak resident memory is its own:

1. ``extract``: ``gc.extract`` into a zarr chips cache;
2. ``embed``: ``gc.embed`` (CNN, contrastive training on ``--max-train`` images for
   ``--epochs``, then every unit and period embedded), streamed from the cache in blocks that
   fit ``--memory-budget``;
3. ``aipw``: ``gc.aipw`` with the embeddings Parquet as ``images=`` (aligned by unit id) on a
   simulated treatment and outcome confounded by the embeddings' first principal component
   (true ATE 1);
4. ``aipw_image``: ``gc.aipw`` with ``images=`` the chips cache and an ``ImageLearner``
   propensity (``period=0``, ``--epochs``, blocks that fit ``--memory-budget``), on a treatment
   and outcome confounded by the first principal component of the cache's summary features
   (computed by blocks; true ATE 1). The cache is never loaded: the image learner cross-fits
   from it fold by fold (``ChipSource.subset``), the summary features and the salience refit
   stream it too. Needs only ``extract`` before it (``--steps extract aipw_image``).
5. ``cate_image`` / ``cate_memory`` (``--design cate``): ``gc.cate`` (DR-learner, 2 folds,
   no evaluation) with an ``ImageLearner`` propensity (``period=0``, ``--epochs``) on a
   treatment and an effect that vary with the first principal component of the summary
   features (true ATE 1), streamed from the chips cache (``cate_image``: summary features by
   blocks, the image learner by row ids, fold by fold) and in memory (``cate_memory``: the
   cache loaded as ``(chips, mask)`` arrays first, the path without streaming).
6. ``aipw_auto`` / ``aipw_auto_memory`` (``--design aipw_auto``): ``gc.aipw`` with the
   default ``representation="auto"`` (the cross-fitted stack over the tabular, summary,
   engineered and learned candidates, no image learner; 2 folds) on the treatment and outcome
   of ``aipw_image``, streamed from the chips cache (``aipw_auto``: summary and engineered
   candidates by blocks, the learned candidate pretrained on its ``--max-train`` images gathered
   from the cache for ``--epochs`` and embedded by blocks, salience reading its 6 units) and in
   memory (``aipw_auto_memory``: the cache loaded as ``(chips, mask)`` arrays first, the path
   before streaming). The learned candidate's pretraining is kept small (``--epochs``, default
   1, instead of up to 100 with early stopping) so that a run fits the 2-core machine.

The target is a peak RSS under 4 GB at 10,000 units, growing at most linearly with units.
Each size's rows are recorded in ``benchmarks/results.md`` (via ``benchmarks/_report.py``).

    .venv/bin/python benchmarks/scale.py                      # 1k, 3k, 10k
    .venv/bin/python benchmarks/scale.py --units 1000 3000    # smaller
    .venv/bin/python benchmarks/scale.py --units 300 --no-record   # a smoke run
    .venv/bin/python benchmarks/scale.py --units 1000 3000 --steps extract aipw_image
    .venv/bin/python benchmarks/scale.py --units 1000 3000 --design cate
    .venv/bin/python benchmarks/scale.py --units 1000 3000 --design aipw_auto
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from geocausal.parallel import ScriptParser, add_parallel_arguments  # noqa: E402

STEPS = ("extract", "embed", "aipw", "aipw_image", "cate_image", "cate_memory", "aipw_auto",
         "aipw_auto_memory")
#: the steps of each ``--design``
DESIGNS = {"aipw": ("extract", "embed", "aipw", "aipw_image"),
           "cate": ("extract", "cate_image", "cate_memory"),
           "aipw_auto": ("extract", "aipw_auto", "aipw_auto_memory")}
#: the steps of the extract -> embed -> AIPW row of results.md
PIPELINE = ("extract", "embed", "aipw")
PERIODS, BANDS, CHIP = 4, 6, 64


def raster_size(n_units: int) -> int:
    """Raster side (px): about 1,600 px^2 of raster per unit, in whole 256-px tiles."""
    return int(max(1024, round((n_units * 1600) ** 0.5 / 256) * 256))


def peak_rss_gb() -> float:
    """Peak resident memory of this process and its finished children (GB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


def run_step(step: str, folder: Path, args) -> dict:
    """One step in this process; returns wall seconds, peak RSS and what it made."""
    import warnings

    import numpy as np
    import pandas as pd

    import geocausal as gc

    t0 = time.perf_counter()
    info: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if step == "extract":
            res = gc.extract(folder / "manifest.yaml", cache_dir=folder / "cache",
                             progress=False, workers=args.workers, scheduler=args.scheduler)
            info["shape"] = list(res.shape)
        elif step == "embed":
            from geocausal.encoders.embed import embed

            embed(folder / "cache", folder / "emb.parquet", encoder="cnn", seed=0,
                  epochs=args.epochs, embed_dim=16, max_train=args.max_train,
                  memory_budget=args.memory_budget, progress=False,
                  scheduler=args.scheduler)
        elif step in ("cate_image", "cate_memory"):
            info.update(_cate_step(step, folder, args))
        elif step in ("aipw_auto", "aipw_auto_memory"):
            info.update(_auto_step(step, folder, args))
        elif step == "aipw_image":
            from geocausal.data.chips import open_cache
            from geocausal.features.align import ChipsView
            from geocausal.nuisance.image_learner import ImageLearner

            cache = open_cache(folder / "cache")
            z = ChipsView(cache, np.arange(len(cache.unit_ids)),  # summary features by blocks
                          memory_budget=args.memory_budget).summary_features()
            z = (z - z.mean(0)) / (z.std(0) + 1e-9)
            rng = np.random.default_rng(0)
            u = np.linalg.svd(z, full_matrices=False)[0][:, 0]
            score = u / u.std()
            d = rng.binomial(1, 1 / (1 + np.exp(-0.5 * score)))
            y = 1.0 * d + 2.0 * score + rng.normal(size=len(d))
            data = pd.DataFrame({"y": y, "d": d}, index=pd.Index(cache.unit_ids))
            lrn = ImageLearner(period=0, epochs=args.epochs, memory_budget=args.memory_budget,
                               seed=0)
            est = gc.aipw("y ~ d", data, images=folder / "cache", folds=2, seed=0,
                          learners={"propensity": lrn})
            info["ate"] = round(float(est.params["d"]), 4)
            info["se"] = round(float(est.std_errors["d"]), 4)
            info["salience"] = isinstance(est.diagnostics.get("salience"), dict)
        else:
            emb = pd.read_parquet(folder / "emb.parquet")
            wide = emb.pivot(index="unit_id", columns="period").sort_index()
            z = wide.to_numpy()
            z = (z - z.mean(0)) / (z.std(0) + 1e-9)
            rng = np.random.default_rng(0)
            u, sv, _ = np.linalg.svd(z - z.mean(0), full_matrices=False)
            score = u[:, 0] / u[:, 0].std()  # the first principal component of the images
            d = rng.binomial(1, 1 / (1 + np.exp(-0.5 * score)))
            y = 1.0 * d + 2.0 * score + rng.normal(size=len(d))
            data = pd.DataFrame({"y": y, "d": d}, index=wide.index)
            est = gc.aipw("y ~ d", data, images=folder / "emb.parquet", folds=5, seed=0)
            info["ate"] = round(float(est.params["d"]), 4)
            info["se"] = round(float(est.std_errors["d"]), 4)
    return {"step": step, "wall_s": round(time.perf_counter() - t0, 2),
            "peak_rss_gb": round(peak_rss_gb(), 3), **info}


def _cate_step(step: str, folder: Path, args) -> dict:
    """``gc.cate`` with an ImageLearner propensity, streamed from the cache or in memory."""

    import geocausal as gc
    from geocausal.data.chips import open_cache
    from geocausal.nuisance.image_learner import ImageLearner

    cache = open_cache(folder / "cache")
    data = _confounded(cache, args, effect_slope=0.5)  # heterogeneous effect, ATE 1
    if step == "cate_image":
        images = folder / "cache"
    else:  # the cache in memory, matched by position (data in the cache's unit order)
        images = cache.load()
    lrn = ImageLearner(period=0, epochs=args.epochs, memory_budget=args.memory_budget, seed=0)
    est = gc.cate("y ~ d", data, images=images, folds=2, seed=0, progress=False,
                  learners={"propensity": lrn}, options={"evaluate": False})
    return {"ate": round(float(est.params["d"]), 4), "se": round(float(est.std_errors["d"]), 4),
            "streamed": bool(est.fitted.streamed)}


def _confounded(cache, args, effect_slope: float = 0.0):
    """Treatment and outcome confounded by the first principal component of the cache's
    summary features (computed by blocks; true ATE 1, the effect ``1 + effect_slope * score``),
    indexed by the cache's unit ids."""
    import numpy as np
    import pandas as pd

    from geocausal.features.align import ChipsView

    z = ChipsView(cache, np.arange(len(cache.unit_ids)),
                  memory_budget=args.memory_budget).summary_features()
    z = (z - z.mean(0)) / (z.std(0) + 1e-9)
    u = np.linalg.svd(z, full_matrices=False)[0][:, 0]
    score = u / u.std()
    rng = np.random.default_rng(0)
    d = rng.binomial(1, 1 / (1 + np.exp(-0.5 * score)))
    y = d * (1.0 + effect_slope * score) + 2.0 * score + rng.normal(size=len(d))
    return pd.DataFrame({"y": y, "d": d}, index=pd.Index(cache.unit_ids))


def _auto_step(step: str, folder: Path, args) -> dict:
    """``gc.aipw`` with the default image stack, streamed from the cache or in memory."""
    import geocausal as gc
    from geocausal.data.chips import open_cache

    cache = open_cache(folder / "cache")
    data = _confounded(cache, args)
    if step == "aipw_auto":  # blocks that fit --memory-budget, as a user sets it
        os.environ["GEOCAUSAL_MEMORY_BUDGET"] = str(args.memory_budget)
        images = folder / "cache"
    else:  # the cache in memory, matched by position (data in the cache's unit order)
        images = cache.load()
    opts = {"image_options": {"learned": {"epochs": args.epochs, "max_train": args.max_train,
                                          "progress": False}}}
    est = gc.aipw("y ~ d", data, images=images, folds=2, seed=0, options=opts)
    sel = est.diagnostics["nuisance_selection"]
    return {"ate": round(float(est.params["d"]), 4), "se": round(float(est.std_errors["d"]), 4),
            "candidates": [c for c in ("summary", "engineered", "learned")
                           if c not in sel["skipped"] and c not in sel["dropped"]],
            "salience": isinstance(est.diagnostics.get("salience"), dict)}


def _streamed_or_memory(steps: dict) -> str:
    """How a design's recorded steps read the cache: one ``*_memory`` step, one streamed step,
    or both."""
    if len(steps) > 1:
        return "in memory vs streamed from the chips cache"
    return ("the chips cache loaded in memory" if next(iter(steps)).endswith("_memory")
            else "streamed from the chips cache")


def main(argv: list[str] | None = None) -> int:
    ap = add_parallel_arguments(ScriptParser(description=__doc__.splitlines()[0]),
                                default_workers=None)
    ap.add_argument("--units", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=4096,
                    help="images the encoder trains on (default 4096)")
    ap.add_argument("--memory-budget", default="1GB",
                    help="memory chips may take at once (default 1GB)")
    ap.add_argument("--folder", type=Path, default=None,
                    help="work folder (default: a temporary one, removed at the end)")
    ap.add_argument("--no-record", action="store_true", help="do not record rows")
    ap.add_argument("--design", choices=sorted(DESIGNS), default="aipw",
                    help="the steps' default set: 'aipw' (extract, embed, aipw, aipw_image), "
                    "'cate' (extract, cate_image, cate_memory) or 'aipw_auto' (extract, "
                    "aipw_auto, aipw_auto_memory)")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=None,
                    help="steps to run, in order (default: those of --design; 'embed' "
                    "before 'aipw', 'extract' before the others)")
    ap.add_argument("--step", choices=STEPS, help=argparse_hidden())
    a = ap.parse_args(argv)
    if any(n < 10 for n in a.units):
        ap.error("--units: give sizes of at least 10 units")
    steps = [s for s in STEPS if s in (a.steps or DESIGNS[a.design])]
    if "extract" not in steps or ("aipw" in steps and "embed" not in steps):
        ap.error("--steps: 'extract' is needed by every other step, 'embed' by 'aipw'")
    if a.step:  # a child: one step, one JSON line
        print(json.dumps(run_step(a.step, a.folder, a)))
        return 0
    from extract import write_study

    base = a.folder or Path(tempfile.mkdtemp(prefix="gc-bench-scale-"))
    table = []
    try:
        for n in a.units:
            folder = base / f"units-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            t0 = time.perf_counter()
            write_study(folder, n, raster_size(n), PERIODS, BANDS, CHIP, seed=0)
            print(f"{n:,} units: study written in {time.perf_counter() - t0:.0f} s "
                  f"({raster_size(n)} px rasters)", flush=True)
            for step in steps:
                cmd = [sys.executable, __file__, "--step", step, "--folder", str(folder),
                       "--epochs", str(a.epochs), "--max-train", str(a.max_train),
                       "--memory-budget", a.memory_budget, "--units", str(n)]
                if a.workers:
                    cmd += ["--workers", str(a.workers)]
                if a.scheduler:
                    cmd += ["--scheduler", a.scheduler]
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      env={**os.environ, "GEOCAUSAL_PROGRESS": "0"})
                if proc.returncode:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"step {step} at {n} units failed "
                                     f"(exit {proc.returncode})")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["units"] = n
                table.append(row)
                extra = {k: v for k, v in row.items()
                         if k not in ("step", "wall_s", "peak_rss_gb", "units")}
                print(f"  {step:8s} {row['wall_s']:8.1f} s   peak RSS {row['peak_rss_gb']:6.2f}"
                      f" GB   {extra if extra else ''}", flush=True)
            shutil.rmtree(folder / "cache", ignore_errors=True)
    finally:
        if a.folder is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print("| units | step | wall (s) | peak RSS (GB) |")
    print("|---|---|---|---|")
    for r in table:
        print(f"| {r['units']:,} | {r['step']} | {r['wall_s']:.1f} | {r['peak_rss_gb']:.2f} |")
    if len(a.units) > 1:
        lo, hi = min(a.units), max(a.units)
        for step in steps:
            r0 = next(r for r in table if r["units"] == lo and r["step"] == step)
            r1 = next(r for r in table if r["units"] == hi and r["step"] == step)
            print(f"{step}: peak RSS x{r1['peak_rss_gb'] / r0['peak_rss_gb']:.2f} for "
                  f"x{hi / lo:.1f} units")
    if not a.no_record:
        from _report import record

        def cells(rows):
            return "; ".join(f"{r['step']} {r['wall_s']:.0f} s, {r['peak_rss_gb']:.2f} GB"
                             for r in rows)

        size = f"{PERIODS} periods x {CHIP}x{CHIP} px x {BANDS} bands"
        for n in a.units:
            rows = [r for r in table if r["units"] == n]
            if all(s in steps for s in PIPELINE):
                record(f"scale: extract -> embed -> AIPW, {n:,} units x {size} (wall, peak "
                       "RSS per step)", None, None,
                       result=cells([r for r in rows if r["step"] in PIPELINE])
                       + f"; embed: {a.epochs} epoch(s) on {a.max_train} images, "
                       f"budget {a.memory_budget}")
            cate = {r["step"]: r for r in rows if r["step"].startswith("cate_")}
            if cate:
                how = _streamed_or_memory(cate)
                record(f"scale: gc.cate with an ImageLearner propensity, {how}, {n:,} units x "
                       f"{size} (wall, peak RSS)", None,
                       None, result=cells([r for r in rows if r["step"] == "extract"]
                                          + list(cate.values()))
                       + f"; DR-learner, ImageLearner {a.epochs} epoch(s), 2 folds, no "
                       f"evaluation, budget {a.memory_budget}; ATE "
                       + ", ".join(f"{k} {r['ate']} (SE {r['se']})" for k, r in cate.items())
                       + " (truth 1)")
            auto = {r["step"]: r for r in rows if r["step"].startswith("aipw_auto")}
            if auto:
                how = _streamed_or_memory(auto)
                first = next(iter(auto.values()))
                record(f"scale: gc.aipw with the default image stack (representation 'auto', "
                       f"no image learner), {how}, {n:,} units x {size} (wall, peak RSS)",
                       None, None,
                       result=cells([r for r in rows if r["step"] == "extract"]
                                    + list(auto.values()))
                       + f"; candidates tabular + {' + '.join(first['candidates'])}, learned "
                       f"candidate pretrained {a.epochs} epoch(s) on {a.max_train} images "
                       f"(kept small), 2 folds, budget {a.memory_budget}; ATE "
                       + ", ".join(f"{k} {r['ate']} (SE {r['se']})" for k, r in auto.items())
                       + " (truth 1)")
            img = next((r for r in rows if r["step"] == "aipw_image"), None)
            if img is not None:
                record(f"scale: AIPW with an ImageLearner propensity streamed from the chips "
                       f"cache, {n:,} units x {size} (wall, peak RSS)", None, None,
                       result=cells([r for r in rows if r["step"] in ("extract", "aipw_image")])
                       + f"; ImageLearner {a.epochs} epoch(s), 2 folds, budget "
                       f"{a.memory_budget}; ATE {img['ate']} (truth 1), SE {img['se']}")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
