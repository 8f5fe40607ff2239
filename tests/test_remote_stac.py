"""Imagery from where users keep it (issue 16 item 3): remote COGs by URL, local STAC catalogs,
xarray/rioxarray arrays. Each source's chips equal the chips (or the pixels) of the same data
read from local GeoTIFFs.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from geocausal.data.chips import extract
from geocausal.data.manifest import load_manifest
from geocausal.data.rasters import close_rasters, write_example_study
from geocausal.data.stac import write_example_stac
from geocausal.errors import DataError, ManifestError


# ----------------------------------------------------------------------------- HTTP server
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (GDAL's /vsicurl/ reads by ranges)."""

    requests_seen: list = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        type(self).requests_seen.append(rng)
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            a = int(m.group(1))
            b = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            body = data[a:b + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()


@pytest.fixture
def http_folder(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    _RangeHandler.requests_seen = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    close_rasters()


def _to_cog(src_path: Path, dst: Path, block: int = 16) -> Path:
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        data = src.read()
        desc = src.descriptions
    profile.update(driver="COG", blocksize=block, overview_resampling="average")
    for k in ("blockxsize", "blockysize", "tiled", "interleave"):
        profile.pop(k, None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        for i, d in enumerate(desc, 1):
            if d:
                out.set_band_description(i, d)
    return dst


def test_remote_cog_chips_equal_local_chips(tmp_path, http_folder):
    root, url = http_folder
    m = write_example_study(tmp_path / "study", n_units=8, size=64, seed=1)
    local = extract(m, cache_dir=tmp_path / "c1", progress=False)
    data = yaml.safe_load((tmp_path / "study" / "manifest.yaml").read_text())
    for r in data["rasters"]:
        name = r["paths"][0]
        cog = _to_cog(tmp_path / "study" / name, root / name)
        with rasterio.open(cog) as s:  # a real COG: tiled with overviews
            assert s.block_shapes[0] == (16, 16) and s.overviews(1)
        r["paths"] = [f"{url}/{name}"]
    (tmp_path / "study" / "remote.yaml").write_text(yaml.safe_dump(data))
    remote = extract(load_manifest(tmp_path / "study" / "remote.yaml"), cache_dir=tmp_path / "c2",
                     progress=False)
    a, am = local.load()
    b, bm = remote.load()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(am, bm)
    assert list(remote.unit_ids) == list(local.unit_ids)
    ranges = [r for r in _RangeHandler.requests_seen if r]
    assert ranges, "GDAL read the COG without range requests"


def _url_manifest(tmp_path: Path, url: str) -> Path:
    m = write_example_study(tmp_path / "study")
    data = yaml.safe_load((tmp_path / "study" / "manifest.yaml").read_text())
    data["rasters"] = [{"period": p, "paths": [url], "bands": ["red", "nir"]}
                       for p in data["periods"]]
    (tmp_path / "study" / "url.yaml").write_text(yaml.safe_dump(data))
    assert m is not None
    return tmp_path / "study" / "url.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_is_one_line_data_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOCAUSAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GEOCAUSAL_HTTP_MAX_RETRY", "0")
    path = _url_manifest(tmp_path, f"http://127.0.0.1:{_free_port()}/nothing.tif")
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"cannot read remote raster 'http://127\.0\.0\.1") as err:
        extract(load_manifest(path), cache_dir=tmp_path / "c", progress=False)
    assert "\n" not in str(err.value) and "GEOCAUSAL_HTTP_TIMEOUT=2" in str(err.value)
    assert time.perf_counter() - t0 < 15
    from geocausal.cli import main

    rc = main(["extract", "--manifest", str(path), "--cache", str(tmp_path / "c"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: cannot read remote")


def test_silent_server_times_out(tmp_path, monkeypatch):
    """A server that accepts the connection but never answers: a DataError within the timeout."""
    monkeypatch.setenv("GEOCAUSAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GEOCAUSAL_HTTP_MAX_RETRY", "0")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    try:
        path = _url_manifest(tmp_path, f"http://127.0.0.1:{sock.getsockname()[1]}/slow.tif")
        t0 = time.perf_counter()
        with pytest.raises(DataError, match="cannot read remote raster"):
            extract(load_manifest(path), cache_dir=tmp_path / "c", progress=False)
        assert 1.0 < time.perf_counter() - t0 < 15
    finally:
        sock.close()


def test_bad_timeout_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOCAUSAL_HTTP_TIMEOUT", "soon")
    path = _url_manifest(tmp_path, "http://127.0.0.1:9/x.tif")
    with pytest.raises(DataError, match="GEOCAUSAL_HTTP_TIMEOUT"):
        extract(load_manifest(path), cache_dir=tmp_path / "c", progress=False)


# ----------------------------------------------------------------------------- STAC
def _stac_study(tmp_path: Path, bands: list[str], windows: dict | None = None) -> Path:
    cat = write_example_stac(tmp_path / "imagery", periods=(2020, 2021), size=32, seed=3)
    from pyproj import Transformer

    rows, cols = [5, 12, 20, 26], [7, 25, 16, 3]
    x = [500_000.0 + 10.0 * (c + 0.5) for c in cols]
    y = [5_000_000.0 - 10.0 * (r + 0.5) for r in rows]
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)
    import pandas as pd

    pd.DataFrame({"id": ["a", "b", "c", "d"], "lon": lon, "lat": lat}).to_csv(
        tmp_path / "units.csv", index=False)
    windows = windows or {2020: "2020-01-01/2020-12-31", 2021: ["2021-01-01", ".."]}
    man = {"name": "stac", "units": {"path": "units.csv", "id": "id", "lon": "lon", "lat": "lat"},
           "rasters": [{"period": p, "bands": bands,
                        "stac": {"path": str(cat.relative_to(tmp_path)), "datetime": w}}
                       for p, w in windows.items()],
           "periods": list(windows), "chip": {"size_px": 4}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(man))
    return tmp_path / "m.yaml"


@pytest.mark.parametrize("bands", [["B04", "B08"], ["red", "nir"]])
def test_stac_chips_equal_the_item_files(tmp_path, bands):
    m = load_manifest(_stac_study(tmp_path, bands))
    assert m.resolved_band_roles().roles == {"red": 0, "nir": 1}  # from eo:bands common names
    res = extract(m, cache_dir=tmp_path / "c", progress=False)
    chips, mask = res.load()
    assert mask.all() and chips.shape == (4, 2, 4, 4, 2)
    rows, cols = [5, 12, 20, 26], [7, 25, 16, 3]
    for t, p in enumerate((2020, 2021)):
        truth = np.stack([rasterio.open(tmp_path / "imagery" / f"scene-{p}" / f"{b}.tif").read(1)
                          for b in ("B04", "B08")], axis=-1)
        for i, (r, c) in enumerate(zip(rows, cols)):
            np.testing.assert_array_equal(chips[i, t], truth[r - 2:r + 2, c - 2:c + 2])
    close_rasters()


def test_stac_item_without_band_names_item_and_band(tmp_path):
    with pytest.raises(ManifestError, match=r"STAC item 'scene-2020' has no band 'B11'"):
        load_manifest(_stac_study(tmp_path, ["B04", "B11"]))
    path = _stac_study(tmp_path, ["B04", "B11"])
    m = load_manifest(path, check_files=False)
    with pytest.raises(DataError, match=r"rasters\.0\.stac.*STAC item 'scene-2020' has no band "
                                        r"'B11'.*'B04': \['B04'\]"):
        extract(m, cache_dir=tmp_path / "c", progress=False)


def test_stac_window_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"no STAC item .* falls in the window"):
        load_manifest(_stac_study(tmp_path, ["B04", "B08"], {2020: "2019-01-01/2019-12-31"}))
    with pytest.raises(ManifestError, match=r"datetime: 'June' is not an ISO date"):
        load_manifest(_stac_study(tmp_path, ["B04", "B08"], {2020: "June/2020-12-31"}))
    with pytest.raises(ManifestError, match="starts .* after it ends"):
        load_manifest(_stac_study(tmp_path, ["B04", "B08"], {2020: "2020-12-31/2020-01-01"}))


# ----------------------------------------------------------------------------- xarray
def test_xarray_chips_equal_geotiff_chips(tmp_path):
    xr = pytest.importorskip("xarray")
    rioxarray = pytest.importorskip("rioxarray")
    m = write_example_study(tmp_path / "study", n_units=7, seed=2)
    ref, ref_mask = extract(m, cache_dir=tmp_path / "c0", progress=False).load()
    das = {p: rioxarray.open_rasterio(tmp_path / "study" / f"img_{p}.tif", masked=False).load()
           for p in (2020, 2021)}
    for da in das.values():
        da.attrs.pop("long_name", None)  # names come from the manifest's band names
    # a mapping of DataArrays, a DataArray with a time dimension, a Dataset per period
    stacked = xr.concat([das[2020], das[2021]], dim="time").assign_coords(
        time=np.array(["2020-06-01", "2021-06-01"], dtype="datetime64[ns]"))
    stacked = stacked.rio.write_crs(das[2020].rio.crs)
    datasets = {p: xr.Dataset({"red": da.isel(band=0, drop=True), "nir": da.isel(band=1, drop=True)}
                              ).rio.write_crs(da.rio.crs) for p, da in das.items()}
    for k, source in enumerate([das, stacked, datasets]):
        res = extract(m, cache_dir=tmp_path / f"c{k + 1}", progress=False, rasters=source)
        chips, mask = res.load()
        np.testing.assert_array_equal(chips, ref)
        np.testing.assert_array_equal(mask, ref_mask)
        assert res.bands == ["red", "nir"] and res.periods == [2020, 2021]
    # a rerun reuses the written GeoTIFF and the chips cache
    again = extract(m, cache_dir=tmp_path / "c1", progress=False, rasters=das)
    assert again.reused


def test_xarray_bad_inputs(tmp_path):
    xr = pytest.importorskip("xarray")
    m = write_example_study(tmp_path / "study")
    da = xr.DataArray(np.zeros((2, 8, 8), "float32"), dims=("band", "y", "x"),
                      coords={"y": np.arange(8.0)[::-1], "x": np.arange(8.0)})
    with pytest.raises(DataError, match="has no CRS"):
        extract(m, cache_dir=tmp_path / "c", progress=False, rasters={2020: da, 2021: da})
    with pytest.raises(DataError, match="expected an xarray DataArray"):
        extract(m, cache_dir=tmp_path / "c", progress=False, rasters=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match=r"periods \[2020\] differ from the manifest's"):
        extract(m, cache_dir=tmp_path / "c", progress=False,
                rasters={2020: da.rio.write_crs("EPSG:32633")})
    assert not os.path.exists(tmp_path / "outside")
