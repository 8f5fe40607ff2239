"""Zonal statistics: geocausal.data.zonal.zonal_stats against calling exactextract directly.

Writes a ``size x size x bands`` float32 GeoTIFF (tiled 256, UTM, 10 m pixels) and ``n`` point
buffers of ``radius`` metres, then times, in the same run and on the same polygons,

- ``exactextract``: ``exact_extract(path, zones, ["mean", "stdev", "count"])`` (every band),
- ``geocausal``: ``zonal_stats(path, zones, bands=..., stats=["mean", "sd", "count"])``
  (nodata, cloud mask, scale/offset and empty-zone handling included),

and checks the numbers agree. The target of issue 16 is a ratio geocausal / exactextract <= 2
for 10,000 buffers on 4096 x 4096 x 6. ``--quantiles`` adds quartiles to both (exactextract's
own interpolated ``quantile`` op against geocausal's inverted-CDF quantiles from the pixel
values; they are different definitions, so only the timing is compared).

Usage::

    python benchmarks/zonal.py                       # 10,000 buffers, 4096 x 4096 x 6
    python benchmarks/zonal.py --size 1024 --n 1000  # a quick run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_raster(path: Path, size: int, bands: int, seed: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands,
                       dtype="float32", crs="EPSG:32633", nodata=-9999.0,
                       transform=from_origin(400_000.0, 4_600_000.0, 10.0, 10.0), tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        for b in range(bands):
            for r0 in range(0, size, 1024):
                h = min(1024, size - r0)
                block = rng.random((h, size), dtype=np.float32)
                from rasterio.windows import Window

                dst.write(block, b + 1, window=Window(0, r0, size, h))


def make_zones(n: int, size: int, radius: float, seed: int):
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    span = size * 10.0
    xy = rng.uniform([400_000.0 + 2 * radius, 4_600_000.0 - span + 2 * radius],
                     [400_000.0 + span - 2 * radius, 4_600_000.0 - 2 * radius], (n, 2))
    pts = gpd.GeoDataFrame({"id": np.arange(n)}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]),
                           crs="EPSG:32633")
    return pts.set_geometry(pts.buffer(radius, quad_segs=32))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--bands", type=int, default=6)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--radius", type=float, default=150.0, help="buffer radius in metres")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantiles", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="timings are the best of this many")
    ap.add_argument("--no-record", action="store_true",
                    help="do not write benchmarks/rows.jsonl (smoke runs, tests)")
    args = ap.parse_args(argv)

    from exactextract import exact_extract

    from geocausal.data.zonal import zonal_stats

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.tif"
        t0 = time.perf_counter()
        make_raster(path, args.size, args.bands, args.seed)
        zones = make_zones(args.n, args.size, args.radius, args.seed + 1)
        print(f"data: {args.size}x{args.size}x{args.bands} raster, {args.n} buffers of "
              f"{args.radius:g} m ({time.perf_counter() - t0:.1f} s to write)")
        names = [f"b{k + 1}" for k in range(args.bands)]
        ee_ops = ["mean", "stdev", "count"]
        gc_stats = ["mean", "sd", "count"]
        quant = [0.25, 0.5, 0.75] if args.quantiles else []
        if quant:
            ee_ops += [f"quantile(q={q})" for q in quant]
        t_ee, t_gc = np.inf, np.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            direct = exact_extract(str(path), zones, ee_ops, output="pandas")
            t_ee = min(t_ee, time.perf_counter() - t)
            t = time.perf_counter()
            ours = zonal_stats(path, zones, bands=names, band_names=names, stats=gc_stats,
                               quantiles=quant, ids=zones["id"])
            t_gc = min(t_gc, time.perf_counter() - t)
        diff = max(float(np.nanmax(np.abs(direct[f"band_{k + 1}_mean"].to_numpy()
                                          - ours[f"b{k + 1}_mean"].to_numpy())))
                   for k in range(args.bands))
        diff_sd = max(float(np.nanmax(np.abs(direct[f"band_{k + 1}_stdev"].to_numpy()
                                             - ours[f"b{k + 1}_sd"].to_numpy())))
                      for k in range(args.bands))
        print(f"exactextract directly: {t_ee:8.2f} s")
        print(f"geocausal zonal_stats: {t_gc:8.2f} s")
        print(f"ratio geocausal / exactextract: {t_gc / t_ee:.2f} (target <= 2)")
        print(f"max |mean difference| {diff:.2e}, max |sd difference| {diff_sd:.2e}")
        if not args.no_record:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from _report import record, speedup

            record(f"zonal statistics ({', '.join(gc_stats)}"
                   f"{' + quartiles' if quant else ''}), "
                   f"{args.n:,} buffers on {args.size}x{args.size}x{args.bands}",
                   "exactextract directly", speedup(t_gc, t_ee),
                   result=f"{t_gc:.1f} s vs {t_ee:.1f} s; max mean diff {diff:.1e}")
        return {"exactextract_s": t_ee, "geocausal_s": t_gc, "ratio": t_gc / t_ee,
                "max_mean_diff": diff}


if __name__ == "__main__":
    main()
