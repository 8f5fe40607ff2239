"""Peak RSS of ImageLearner training on a chips cache: loaded in memory vs streamed in blocks.

Writes a zarr chips cache of ``--units`` units x 1 period x ``--chip``^2 px x 6 bands (units in
a shuffled storage order, as the extractor writes them) to a temporary folder, then in a fresh
process per arm fits ``ImageLearner`` (1 epoch) and predicts every unit:

- ``memory``: the chips loaded with ``np.asarray`` (what ``ImageLearner`` did before it streamed);
- ``stream``: the cache itself (``ImageLearner(period=0, memory_budget=...)``): blocks of units.

Prints wall seconds and peak RSS (``ru_maxrss``) per arm. Run:
``python benchmarks/stream_train.py --units 3000 --budget 256MB``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_cache(folder: Path, n: int, chip: int, bands: int = 6, seed: int = 0):
    import zarr

    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)
    g = zarr.open_group(str(folder / "chips-bench.zarr"), mode="w")
    c = g.create_array("chips", shape=(n, 1, chip, chip, bands), dtype="float32",
                       chunks=(16, 1, chip, chip, bands))
    m = g.create_array("mask", shape=(n, 1, chip, chip), dtype="bool",
                       chunks=(16, 1, chip, chip))
    y = np.zeros(n)
    for a in range(0, n, 256):
        b = min(a + 256, n)
        x = rng.normal(size=(b - a, 1, chip, chip, bands)).astype("float32")
        signal = rng.normal(size=b - a)
        x[..., 0] += signal[:, None, None, None]
        units = np.flatnonzero((rows >= a) & (rows < b))  # units stored in rows a..b
        order = units[np.argsort(rows[units])]
        c[a:b] = x
        m[a:b] = True
        y[order] = (signal > 0) * 1.0
    g.attrs["rows"] = rows.tolist()
    np.save(folder / "y.npy", y)
    return folder / "chips-bench.zarr"


def run_arm(path: str, mode: str, budget: str) -> dict:
    import zarr

    from geocausal.data.chips import UnitOrderArray
    from geocausal.nuisance.image_learner import ImageLearner

    g = zarr.open_group(path, mode="r")
    rows = np.asarray(g.attrs["rows"])
    lazy = UnitOrderArray(g["chips"], rows)
    y = np.load(Path(path).parent / "y.npy")
    kw = dict(epochs=1, widths=(16, 32), embed_dim=32, seed=0, period=0)
    t = time.perf_counter()
    if mode == "memory":
        x = np.asarray(lazy)[:, 0]
        lr = ImageLearner(**kw).fit(x, y)
        p = lr.predict_proba(x)[:, 1]
    else:
        lr = ImageLearner(**kw, memory_budget=budget).fit(lazy, y)
        p = lr.predict_proba(lazy)[:, 1]
    wall = time.perf_counter() - t
    acc = float(((p > 0.5) == (y > 0.5)).mean())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KB -> GB
    return {"mode": mode, "wall_s": round(wall, 1), "peak_rss_gb": round(rss, 2),
            "accuracy": round(acc, 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=3000)
    ap.add_argument("--chip", type=int, default=64)
    ap.add_argument("--budget", default="256MB", help="memory budget of the streamed arm")
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.units < 1 or args.chip < 1:
        print("--units and --chip must be positive", file=sys.stderr)
        raise SystemExit(2)
    if args.arm:
        print(json.dumps(run_arm(args.path, args.arm, args.budget)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = write_cache(Path(tmp), args.units, args.chip)
        gb = args.units * args.chip**2 * 6 * 4 / 1024**3
        print(f"cache: {args.units} units x 1 period x {args.chip}x{args.chip} px x 6 bands "
              f"({gb:.2f} GB float32); streamed budget {args.budget}")
        for arm in ("memory", "stream"):
            out = subprocess.run([sys.executable, __file__, "--arm", arm, "--path", str(path),
                                  "--budget", args.budget], capture_output=True, text=True,
                                 check=True)
            print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
