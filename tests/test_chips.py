"""Chip extraction: geometry across CRSs and edges, nodata and clouds, outside units, cache
resume after a crash, and the Dask path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin

import geocausal as gc
from geocausal.data import chips as chips_mod
from geocausal.data.chips import extract, open_cache
from geocausal.data.manifest import load_manifest
from geocausal.data.rasters import write_geotiff
from geocausal.errors import GeocausalWarning

SIZE = 40


def _field(t: int, b: int, size: int = SIZE) -> np.ndarray:
    """A raster whose every pixel says where it is: 1000 t + 100 b + row + col / 100."""
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32)
    return (1000 * t + 100 * b + rr + cc / 100).astype(np.float32)


def _study(tmp: Path, *, crs: str, origin: tuple[float, float], res: float,
           pix: list[tuple[float, float]], periods=(1, 2), nbands=2, chip=6, tiles=None,
           nodata=None, cloud=None, extra_units=()) -> Path:
    """Write rasters + a units CSV (lon/lat in EPSG:4326 at the given pixel centres) + manifest.

    ``pix`` holds (row, col) pixel coordinates (fractions allowed) in the full grid.
    ``tiles`` splits each period's grid into column ranges written as separate files.
    """
    transform = from_origin(origin[0], origin[1], res, res)
    rasters = []
    for t, p in enumerate(periods):
        data = np.stack([_field(t, b) for b in range(nbands)])
        bands = [f"b{b}" for b in range(nbands)]
        if nodata is not None:
            data[:, nodata[0], nodata[1]] = -1.0
        if cloud is not None:
            cm = np.zeros((1, SIZE, SIZE), np.float32)
            cm[0, cloud[0], cloud[1]] = 3.0
            data = np.concatenate([data, cm])
            bands = [*bands, "qa"]
        spans = tiles or [(0, SIZE)]
        paths = []
        for j, (c0, c1) in enumerate(spans):
            tr = transform * transform.translation(c0, 0)
            name = f"p{p}_t{j}.tif"
            write_geotiff(tmp / name, np.ascontiguousarray(data[:, :, c0:c1]), crs, tr,
                          blocksize=16 if (c1 - c0) % 16 == 0 else None)
            paths.append(name)
        spec = {"period": p, "paths": paths, "bands": bands}
        if nodata is not None:
            spec["nodata"] = -1.0
        if cloud is not None:
            spec["cloud_mask"] = {"band": "qa", "clear_values": [0]}
        rasters.append(spec)
    rows = np.array([p[0] for p in pix], float)
    cols = np.array([p[1] for p in pix], float)
    x = origin[0] + res * cols
    y = origin[1] - res * rows
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    lon = list(lon) + [u[0] for u in extra_units]
    lat = list(lat) + [u[1] for u in extra_units]
    pd.DataFrame({"id": [f"u{i}" for i in range(len(lon))], "lon": lon,
                  "lat": lat}).to_csv(tmp / "units.csv", index=False)
    man = {"name": "t", "units": {"path": "units.csv", "id": "id", "lon": "lon", "lat": "lat"},
           "rasters": rasters, "periods": list(periods), "chip": {"size_px": chip}}
    (tmp / "m.yaml").write_text(yaml.safe_dump(man))
    return tmp / "m.yaml"


UTM = dict(crs="EPSG:32633", origin=(500_000.0, 5_000_000.0), res=10.0)
MERC = dict(crs="EPSG:3857", origin=(1_500_000.0, 6_000_000.0), res=30.0)


@pytest.mark.parametrize("grid", [UTM, MERC], ids=["utm", "web-mercator"])
def test_known_pixel_lands_at_known_position(tmp_path, grid):
    # unit at the centre of pixel (r, c): chip pixel (i, j) is raster pixel (r - 3 + i, c - 3 + j)
    pix = [(10.5, 20.5), (25.5, 7.5), (30.2, 30.9)]
    res = extract(_study(tmp_path, pix=pix, **grid), progress=False)
    chips, mask = res.load()
    assert chips.shape == (3, 2, 6, 6, 2) and mask.all()
    for u, (r, c) in enumerate(pix):
        r, c = int(r), int(c)
        for t in range(2):
            for b in range(2):
                expect = _field(t, b)[r - 3:r + 3, c - 3:c + 3]
                np.testing.assert_allclose(chips[u, t, :, :, b], expect, rtol=0, atol=1e-3)
        assert chips[u, 0, 3, 3, 0] == pytest.approx(r + c / 100, abs=1e-3)
    assert list(res.unit_ids) == ["u0", "u1", "u2"] and res.periods == [1, 2]
    assert res.bands == ["b0", "b1"] and res.outside_ids == []


def test_edges_are_padded_and_masked(tmp_path):
    pix = [(0.5, 0.5), (39.5, 38.5)]
    chips, mask = extract(_study(tmp_path, pix=pix, **UTM), progress=False).load()
    # unit 0 at pixel (0, 0): chip rows/cols 0..2 fall off the raster
    assert not mask[0, :, :3, :].any() and not mask[0, :, :, :3].any()
    assert mask[0, :, 3:, 3:].all()
    assert (chips[0, :, :3] == 0).all()
    np.testing.assert_allclose(chips[0, 1, 3:, 3:, 1], _field(1, 1)[0:3, 0:3], atol=1e-3)
    # unit 1 at pixel (39, 38): rows 4.. and cols 5.. are off the raster
    assert mask[1, :, :4, :5].all() and not mask[1, :, 4:, :].any() and not mask[1, :, :, 5:].any()
    np.testing.assert_allclose(chips[1, 0, :4, :5, 0], _field(0, 0)[36:40, 35:40], atol=1e-3)


def test_nodata_and_cloud_mask(tmp_path):
    pix = [(10.5, 10.5)]
    path = _study(tmp_path, pix=pix, nodata=(9, 11), cloud=(12, 8), **UTM)
    res = extract(path, progress=False)
    chips, mask = res.load()
    assert res.bands == ["b0", "b1"] and chips.shape[-1] == 2  # the mask band is not output
    # chip position = raster pixel - (10 - 3)
    assert not mask[0, :, 2, 4].any() and not mask[0, :, 5, 1].any()
    assert mask[0].sum() == 2 * (36 - 2)
    assert (chips[0, :, 2, 4] == 0).all()


def test_scale_offset(tmp_path):
    path = _study(tmp_path, pix=[(10.5, 10.5)], **UTM)
    man = yaml.safe_load(path.read_text())
    for r in man["rasters"]:
        r.update(scale=0.5, offset=2.0)
    path.write_text(yaml.safe_dump(man))
    chips, _ = extract(path, progress=False).load()
    assert chips[0, 0, 3, 3, 0] == pytest.approx(0.5 * (10 + 0.10) + 2.0, abs=1e-4)


def test_units_outside_are_reported_not_dropped(tmp_path):
    path = _study(tmp_path, pix=[(5.5, 5.5), (20.5, 20.5)], extra_units=[(0.0, 0.0)], **UTM)
    with pytest.warns(GeocausalWarning, match="1 units lie outside"):
        res = extract(path, progress=False)
    assert res.outside_ids == ["u2"] and res.shape[0] == 3
    assert not np.asarray(res.mask[2]).any() and np.asarray(res.mask[:2]).any()
    assert "outside every raster: 1" in res.report()
    # reopening the cache keeps the report, and warns again
    with pytest.warns(GeocausalWarning):
        again = extract(path, progress=False)
    assert again.reused and again.outside_ids == ["u2"]


def test_several_tiles_per_period(tmp_path):
    # the grid is split in two files at column 16; a chip straddling the seam is stitched
    pix = [(10.5, 15.5), (20.5, 30.5), (5.5, 3.5)]
    res = extract(_study(tmp_path, pix=pix, tiles=[(0, 16), (16, SIZE)], **UTM), progress=False)
    chips, mask = res.load()
    assert mask.all()
    for u, (r, c) in enumerate(pix):
        r, c = int(r), int(c)
        np.testing.assert_allclose(chips[u, 1, :, :, 0], _field(1, 0)[r - 3:r + 3, c - 3:c + 3],
                                   atol=1e-3)


def test_chip_size_in_metres(tmp_path):
    path = _study(tmp_path, pix=[(20.5, 20.5)], **UTM)
    man = yaml.safe_load(path.read_text())
    man["chip"] = {"size_m": 80.0}  # 10 m pixels -> 8 px
    path.write_text(yaml.safe_dump(man))
    assert extract(path, progress=False).shape == (1, 2, 8, 8, 2)


def _dense_study(tmp_path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(1)
    pix = list(zip(rng.uniform(0, SIZE, n), rng.uniform(0, SIZE, n)))
    return _study(tmp_path, pix=pix, **UTM)


def test_cache_resumes_after_crash(tmp_path, monkeypatch):
    clean_dir, crash_dir = tmp_path / "clean", tmp_path / "crash"
    clean_dir.mkdir()
    crash_dir.mkdir()
    clean = extract(_dense_study(clean_dir), progress=False, task_mb=0.002)
    assert clean.tasks_run > 4
    real = chips_mod._run_task
    calls = {"n": 0}

    def crashing(task, tmp):
        if calls["n"] == 3:
            # die half-way through a task: its chunks are partly written, its marker is not
            import zarr

            zarr.open_group(tmp, mode="r+")["chips"][task.start:task.stop] = 7.0
            raise KeyboardInterrupt("simulated crash")
        calls["n"] += 1
        return real(task, tmp)

    path = _dense_study(crash_dir)
    monkeypatch.setattr(chips_mod, "_run_task", crashing)
    with pytest.raises(KeyboardInterrupt):
        extract(path, progress=False, task_mb=0.002)
    partial = list((crash_dir / ".cache").glob("*.partial"))
    assert len(partial) == 1 and len(list((partial[0] / "_done").glob("*.npy"))) == 3
    with pytest.raises(gc.DataError, match="not a chips cache|not a finished"):
        open_cache(partial[0])
    monkeypatch.setattr(chips_mod, "_run_task", real)
    resumed = extract(path, progress=False, task_mb=0.002)
    assert resumed.tasks_run == clean.tasks_run - 3
    a, am = clean.load()
    b, bm = resumed.load()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(am, bm)
    assert not list((crash_dir / ".cache").glob("*.partial"))
    assert list(resumed.unit_ids) == list(clean.unit_ids)


def test_dask_workers_equal_serial(tmp_path):
    path = _dense_study(tmp_path, n=30)
    serial = extract(path, cache_dir=tmp_path / "serial", progress=False, task_mb=0.004)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        par = extract(path, cache_dir=tmp_path / "dask", workers=2, progress=False, task_mb=0.004)
    assert par.tasks_run == serial.tasks_run > 1
    np.testing.assert_array_equal(serial.load()[0], par.load()[0])
    np.testing.assert_array_equal(serial.load()[1], par.load()[1])


def test_open_cache_and_image_features(tmp_path):
    from geocausal.features.images import image_features

    res = extract(_dense_study(tmp_path, n=5), progress=False)
    cache = open_cache(tmp_path / ".cache")
    assert cache.path == res.path and cache.chip_size == 6
    assert cache.manifest_hash == load_manifest(tmp_path / "m.yaml").content_hash()
    feats = image_features(res.path, 5)
    assert feats.shape == (5, 2 * 2 * 2)
    with pytest.raises(gc.DataError, match="not a chips cache"):
        open_cache(tmp_path)  # no cache directly here


def test_cli_extract(tmp_path, capsys):
    from geocausal.cli import main

    path = _dense_study(tmp_path, n=4)
    assert main(["extract", "--manifest", str(path), "--cache", str(tmp_path / "c"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "chips for 4 units x 2 periods" in out and "cache" in out



def test_unit_order_view_indexing(tmp_path):
    res = extract(_dense_study(tmp_path, n=25), progress=False, task_mb=0.004)
    full = np.asarray(res.chips)
    assert res.chips.array.chunks[0] > 1  # several units per stored chunk
    assert not np.array_equal(res.chips.rows, np.arange(25))  # stored in spatial order
    np.testing.assert_array_equal(res.chips[3], full[3])
    np.testing.assert_array_equal(res.chips[5:9], full[5:9])
    np.testing.assert_array_equal(res.chips[[7, 2, 7]], full[[7, 2, 7]])
    np.testing.assert_array_equal(res.chips[2:4, 1, :, :, 0], full[2:4, 1, :, :, 0])
    np.testing.assert_array_equal(res.chips[..., 1], full[..., 1])
    units, block, mask = next(res.iter_blocks(units=10))
    np.testing.assert_array_equal(block, full[units])
    np.testing.assert_array_equal(mask, np.asarray(res.mask)[units])
    # in unit order, every chip is centred on its own unit's pixel
    rng = np.random.default_rng(1)  # the draws of _dense_study
    rows, cols = rng.uniform(0, SIZE, 25), rng.uniform(0, SIZE, 25)
    np.testing.assert_allclose(full[:, 0, 3, 3, 0], np.floor(rows) + np.floor(cols) / 100,
                               atol=1e-3)


def test_cache_of_an_older_layout_is_rebuilt(tmp_path):
    import zarr

    path = _dense_study(tmp_path, n=4)
    first = extract(path, progress=False)
    before = first.load()[0]
    zarr.open_group(str(first.path), mode="r+").attrs["format"] = "geocausal-chips-0"
    with pytest.raises(gc.DataError, match="not a finished chips cache"):
        open_cache(first.path)
    again = extract(path, progress=False)
    assert not again.reused and again.path == first.path
    np.testing.assert_array_equal(before, again.load()[0])


# ----------------------------------------------------------------------------- issue 13
def _same_cache(a, b) -> None:
    np.testing.assert_array_equal(a.load()[0], b.load()[0])
    np.testing.assert_array_equal(a.load()[1], b.load()[1])
    np.testing.assert_array_equal(a.coverage, b.coverage)
    assert list(a.unit_ids) == list(b.unit_ids)
    assert a.outside_ids == b.outside_ids and a.empty_ids == b.empty_ids


def _crash_before(step):
    def crashing(*args):
        raise KeyboardInterrupt(f"simulated kill before {step.__name__}")
    return crashing


def _crash_after(step):
    def crashing(*args):
        step(*args)
        raise KeyboardInterrupt(f"simulated kill after {step.__name__}")
    return crashing


def test_finalisation_survives_a_kill_at_every_step(tmp_path, monkeypatch):
    """Kill extract before and after each finalisation step; a rerun equals a clean run."""
    pix = [(5.5, 5.5), (20.5, 30.5), (33.5, 12.5), (10.5, 25.5)]
    path = _study(tmp_path, pix=pix, extra_units=[(60.0, 10.0)], **UTM)
    with pytest.warns(GeocausalWarning):
        clean = extract(path, cache_dir=tmp_path / "clean", progress=False, task_mb=0.002)
    assert clean.tasks_run > 1 and clean.outside_ids == ["u4"]
    write_steps = chips_mod._WRITE_STEPS
    real_cleanup, real_publish = chips_mod._step_remove_work_files, chips_mod._step_publish

    def half_cleanup(tmp):  # killed after the task markers are gone, before the rest
        import shutil

        shutil.rmtree(tmp / "_done")
        raise KeyboardInterrupt("simulated kill inside the clean-up")

    scenarios = []
    for k, step in enumerate(write_steps):
        for wrap in (_crash_before, _crash_after):
            steps = list(write_steps)
            steps[k] = wrap(step)
            scenarios.append((f"{wrap.__name__}:{step.__name__}", "_WRITE_STEPS", tuple(steps)))
    scenarios += [("cleanup-before", "_step_remove_work_files", _crash_before(real_cleanup)),
                  ("cleanup-half", "_step_remove_work_files", half_cleanup),
                  ("cleanup-after", "_step_remove_work_files", _crash_after(real_cleanup)),
                  ("publish-before", "_step_publish", _crash_before(real_publish))]
    for i, (name, attr, value) in enumerate(scenarios):
        cache_dir = tmp_path / f"c{i}"
        with monkeypatch.context() as mp:
            mp.setattr(chips_mod, attr, value)
            with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                extract(path, cache_dir=cache_dir, progress=False, task_mb=0.002)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = extract(path, cache_dir=cache_dir, progress=False, task_mb=0.002)
            third = extract(path, cache_dir=cache_dir, progress=False, task_mb=0.002)
        _same_cache(clean, again)
        assert third.reused, name
        assert not list(cache_dir.glob("*.partial")), name
        assert sorted(p.name for p in again.path.iterdir() if p.name.startswith("_")) == [], name


def test_a_folder_geocausal_did_not_make_is_never_deleted(tmp_path):
    path = _dense_study(tmp_path, n=4)
    m = load_manifest(path)
    cache_dir = tmp_path / "caches"
    final = cache_dir / chips_mod.cache_name(m, 6)
    final.mkdir(parents=True)
    (final / "thesis.tex").write_text("years of work")
    with pytest.raises(gc.DataError, match="not made by geocausal.*overwrite=True"):
        extract(path, cache_dir=cache_dir, progress=False)
    assert (final / "thesis.tex").read_text() == "years of work"
    # the same for a user's folder at the work-folder path
    final.rename(tmp_path / "kept")
    partial = cache_dir / (final.name + ".partial")
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    with pytest.raises(gc.DataError, match="not made by geocausal"):
        extract(path, cache_dir=cache_dir, progress=False)
    assert (partial / "notes.txt").read_text() == "mine"
    # an explicit overwrite replaces it; a cache geocausal made carries the marker
    res = extract(path, cache_dir=cache_dir, progress=False, overwrite=True)
    assert not partial.exists() and (res.path / chips_mod.OWNER_MARKER).is_file()
    assert res.load()[0].shape == (4, 2, 6, 6, 2)
    # a broken cache that geocausal made is rebuilt without asking
    import zarr

    zarr.open_group(str(res.path), mode="r+").attrs["format"] = "broken"
    again = extract(path, cache_dir=cache_dir, progress=False)
    assert not again.reused
    np.testing.assert_array_equal(again.load()[0], res.load()[0])


def test_all_nodata_chips_are_reported(tmp_path):
    # unit 0 sits in a 10 x 10 nodata block (its 6 x 6 chip is all nodata in both periods)
    pix = [(10.5, 10.5), (30.5, 30.5), (25.5, 5.5)]
    path = _study(tmp_path, pix=pix, nodata=(slice(5, 16), slice(5, 16)), **UTM)
    with pytest.warns(GeocausalWarning, match=r"1 units lie on a raster but their chip holds "
                                              r"no valid pixel.*'u0'"):
        res = extract(path, progress=False)
    assert res.empty_ids == ["u0"] and res.outside_ids == []
    assert "all-nodata chips: 1 (ids ['u0'])" in res.report()
    assert not res.load()[1][0].any() and res.load()[1][1:].all()
    assert open_cache(res.path).empty_ids == ["u0"]
