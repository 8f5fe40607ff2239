"""Chips per second of ``gc.extract`` against the naive loop, on the same units and rasters.

Default size: 10,000 units x 4 periods x 64x64 px x 6 bands; the rasters are 6-band uint16
GeoTIFFs (deflate, 256x256 internal tiles: COG-like), one per period, written to a temporary
folder. ``gc.extract`` runs first (into a zarr cache on disk) and its peak memory is the
process's peak resident size when it ends (the rasters are written block by block before, so
that peak belongs to the extraction), plus the tracemalloc peak of Python/numpy allocations.

The naive loops, timed in the same process on the same units:
- open per read: for every period and unit, open the raster, one windowed (boundless) read;
- open once: open each period's raster once, then one windowed (boundless) read per unit;
- open once, clipped: as above, but read only the on-raster part and pad by hand (the
  fastest loop a careful user would write).
Both write each chip into a preallocated float32 array on disk (``numpy.memmap``).

The rasters are written once; ``gc.extract`` (into a fresh cache) and the careful loop are
then timed in alternation ``--repeats`` times (the other two loops once), and the recorded
ratio is the median of the per-repeat ratios (the machine is shared: each repeat's two arms
run back to back under the same load).

Usage: ``python benchmarks/extract.py [--small] [--units N] [--naive-units K] [--threads T]
[--repeats R] [--careful-only] [--no-record]``; with
``--naive-units`` the naive loops run on the first K units only (throughput is per chip).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import geocausal as gc  # noqa: E402

CRS = "EPSG:32633"
RES = 10.0
ORIGIN = (300_000.0, 5_200_000.0)


def write_rasters(folder: Path, size: int, periods: int, bands: int, seed: int) -> list[Path]:
    """Write one tiled, deflate-compressed, uint16 GeoTIFF per period, strip by strip."""
    rng = np.random.default_rng(seed)
    transform = from_origin(*ORIGIN, RES, RES)
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint16",
                   crs=CRS, transform=transform, nodata=0, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", predictor=2, interleave="pixel")
    paths = []
    strip = 512
    coarse = rng.uniform(500, 3000, size=(periods, bands, size // 64 + 2, size // 64 + 2))
    for t in range(periods):
        path = folder / f"scene_{2020 + t}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            for r0 in range(0, size, strip):
                h = min(strip, size - r0)
                rows = (np.arange(r0, r0 + h) // 64)[:, None]
                cols = (np.arange(size) // 64)[None, :]
                block = coarse[t][:, rows, cols] + rng.normal(0, 50, size=(bands, h, size))
                dst.write(np.clip(block, 1, 65535).astype(np.uint16), window=Window(0, r0, size, h))
        paths.append(path)
    return paths


def write_study(folder: Path, n_units: int, size: int, periods: int, bands: int, chip: int,
                seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    paths = write_rasters(folder, size, periods, bands, seed)
    rng = np.random.default_rng(seed + 1)
    cols = rng.uniform(0, size, n_units)
    rows = rng.uniform(0, size, n_units)
    x = ORIGIN[0] + RES * cols
    y = ORIGIN[1] - RES * rows
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    pd.DataFrame({"id": np.arange(n_units), "lon": lon, "lat": lat}).to_csv(
        folder / "units.csv", index=False)
    names = [f"b{b}" for b in range(bands)]
    man = {"name": "bench", "units": {"path": "units.csv", "id": "id", "lon": "lon", "lat": "lat"},
           "rasters": [{"period": 2020 + t, "paths": [p.name], "bands": names, "nodata": 0,
                        "scale": 0.0001} for t, p in enumerate(paths)],
           "periods": [2020 + t for t in range(periods)], "chip": {"size_px": chip}}
    (folder / "manifest.yaml").write_text(yaml.safe_dump(man))
    return folder / "manifest.yaml", np.asarray(lon), np.asarray(lat)


def naive(paths: list[Path], lon: np.ndarray, lat: np.ndarray, chip: int, out: np.ndarray,
          open_once: bool, clip: bool = False) -> None:
    """The loop a user would write: one windowed read per unit per period.

    ``clip``: read only the part of the window on the raster and pad by hand (instead of
    rasterio's boundless read).
    """
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(lon, lat)
    for t, path in enumerate(paths):
        src = rasterio.open(path) if open_once else None
        for i in range(len(x)):
            ds = src if open_once else rasterio.open(path)
            r, c = ds.index(x[i], y[i])
            r0, c0 = r - chip // 2, c - chip // 2
            if clip:
                ra, rb = max(r0, 0), min(r0 + chip, ds.height)
                ca, cb = max(c0, 0), min(c0 + chip, ds.width)
                arr = np.zeros((ds.count, chip, chip), np.uint16)
                arr[:, ra - r0:rb - r0, ca - c0:cb - c0] = ds.read(
                    window=Window(ca, ra, cb - ca, rb - ra))
            else:
                arr = ds.read(window=Window(c0, r0, chip, chip), boundless=True, fill_value=0)
            out[i, t] = np.moveaxis(arr, 0, -1) * np.float32(0.0001)
            if not open_once:
                ds.close()
        if open_once:
            src.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="a tiny version (seconds)")
    p.add_argument("--units", type=int, default=None)
    p.add_argument("--naive-units", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="gc.extract threads (default: the CPUs available, at most 4)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs of gc.extract and the careful loop, alternated (median ratio)")
    p.add_argument("--careful-only", action="store_true",
                   help="time only the careful loop (skip the two slow boundless loops)")
    p.add_argument("--no-record", action="store_true", help="do not write benchmarks/rows.jsonl")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.small:
        n, size, periods, bands, chip = 400, 1024, 2, 6, 32
    else:
        n, size, periods, bands, chip = 10_000, 4096, 4, 6, 64
    n = args.units or n
    k = min(args.naive_units or n, n)
    work = Path(tempfile.mkdtemp(prefix="gc-bench-extract-"))
    try:
        t0 = time.perf_counter()
        manifest, lon, lat = write_study(work, n, size, periods, bands, chip, args.seed)
        print(f"rasters: {periods} x {size}x{size} px x {bands} bands (uint16, deflate, 256 px "
              f"tiles), {n} units, chip {chip} px; written in {time.perf_counter() - t0:.1f} s")
        # warm-up on a tiny study: imports (zarr, geopandas, pyproj...) stay out of the timing
        from geocausal.data.rasters import write_example_study

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.extract(write_example_study(work / "warmup"), cache_dir=work / "warmup" / "c",
                       progress=False)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        paths = [work / f"scene_{2020 + t}.tif" for t in range(periods)]
        chips = n * periods
        careful = "naive (open once, clipped read + manual pad)"
        variants = (("naive (open per read, boundless)", False, False),
                    ("naive (open once, boundless)", True, False),
                    (careful, True, True))
        rates: dict[str, list[float]] = {}
        cpu_rates: dict[str, list[float]] = {}
        ext_rates, ext_cpu, ratios, cpu_ratios = [], [], [], []
        rss = tm_peak = None
        for rep in range(args.repeats):
            shutil.rmtree(work / "cache", ignore_errors=True)
            if rep == 0:
                tracemalloc.start()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = gc.extract(manifest, cache_dir=work / "cache", progress=False,
                                 threads=args.threads)
            t_ext = time.perf_counter() - t0
            c_ext = time.process_time() - cpu0
            if rep == 0:
                _, tm_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            ext_rates.append(chips / t_ext)
            ext_cpu.append(chips / c_ext)
            print(f"[{rep + 1}/{args.repeats}] gc.extract: {t_ext:.1f} s, {chips / t_ext:,.0f} "
                  f"chips/s ({c_ext:.1f} s CPU)" + (f"; peak RSS {rss:.2f} GB (before: "
                  f"{rss0:.2f} GB), tracemalloc peak {tm_peak / 2**30:.2f} GB" if rep == 0 else ""))
            for label, once, clip in variants:
                if (rep > 0 or args.careful_only) and label != careful:
                    continue
                out = np.lib.format.open_memmap(work / "naive.npy", mode="w+", dtype=np.float32,
                                                shape=(k, periods, chip, chip, bands))
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                naive(paths, lon[:k], lat[:k], chip, out, open_once=once, clip=clip)
                out.flush()
                dt = time.perf_counter() - t0
                cpu_rates.setdefault(label, []).append(k * periods / (time.process_time() - cpu0))
                rates.setdefault(label, []).append(k * periods / dt)
                print(f"[{rep + 1}/{args.repeats}] {label}: {dt:.1f} s on {k} units, "
                      f"{k * periods / dt:,.0f} chips/s")
                sample = np.asarray(res.chips[: min(k, 50)])
                same = np.array_equal(sample, out[: min(k, 50)])
                print(f"  first chips equal gc.extract's (to the bit): {same}")
                del out
                (work / "naive.npy").unlink()
            ratios.append(ext_rates[-1] / rates[careful][-1])
            cpu_ratios.append(ext_cpu[-1] / cpu_rates[careful][-1])
            print(f"[{rep + 1}/{args.repeats}] ratio against the careful loop: {ratios[-1]:.2f}x "
                  f"wall, {cpu_ratios[-1]:.2f}x CPU")
        ext_rate = float(np.median(ext_rates))
        for label, rate in rates.items():
            print(f"ratio gc.extract / {label}: {ext_rate / float(np.median(rate)):.1f}x "
                  f"(medians)")
        ratio, cpu_ratio = float(np.median(ratios)), float(np.median(cpu_ratios))
        print(f"cache: {res.path.name}, shape {res.shape}")
        print(f"median over {args.repeats} repeats against the careful loop: {ratio:.2f}x wall "
              f"(each: {', '.join(f'{r:.2f}' for r in ratios)}), {cpu_ratio:.2f}x CPU")
        if not args.small and not args.no_record:
            from _report import record

            k_note = f" (careful loop timed on the first {k:,} units)" if k < n else ""
            record(f"extraction, {n:,} units x {periods} periods x {chip}x{chip} px x {bands} bands",
                   "careful loop (open once, clipped windowed read, pad by hand)", ratio,
                   result=f"median of {args.repeats} alternated repeats (each "
                   f"{', '.join(f'{r:.2f}x' for r in ratios)}); median rates {ext_rate:,.0f} vs "
                   f"{float(np.median(rates[careful])):,.0f} chips/s (ratio of the medians "
                   f"{ext_rate / float(np.median(rates[careful])):.2f}x){k_note}; CPU-time ratio "
                   f"{cpu_ratio:.2f}x; peak RSS {rss:.2f} GB; target 2x, RSS < 2 GB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
