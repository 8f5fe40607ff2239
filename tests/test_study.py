"""load_study end to end on small studies written with rasterio."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import box

from geocausal.data.rasters import write_example_study
from geocausal.data.study import load_study
from geocausal.errors import DataError

X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0


def _field(t: int, b: int) -> np.ndarray:
    rr, cc = np.mgrid[0:64, 0:64].astype(np.float64)
    return 1000 * t + 100 * b + rr + cc / 100


def _polygon_study(tmp_path, panel: bool = False):
    """The example rasters with polygon units in a GeoPackage (optionally a long panel)."""
    write_example_study(tmp_path, n_units=2)
    centres = [(20, 30), (40, 12)]  # (row, col) of the pixel holding each centroid
    geoms = [box(X0 + RES * (c - 1), Y0 - RES * (r + 2), X0 + RES * (c + 2), Y0 - RES * (r - 1))
             for r, c in centres]
    rows = {"site": ["s1", "s2"], "y": [1.0, 2.0], "treat": [0, 1]}
    if panel:
        rows = {"site": ["s1", "s1", "s2", "s2"], "year": [2021, 2020, 2020, 2021],
                "y": [1.0, 2.0, 3.0, 4.0], "treat": [0, 0, 1, 1]}
        geoms = [geoms[0], geoms[0], geoms[1], geoms[1]]
    gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:32633").to_file(tmp_path / "sites.gpkg")
    man = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    man["units"] = {"path": "sites.gpkg", "id": "site"}
    man["columns"] = {"outcome": ["y"], "treatment": ["treat"]}
    if panel:
        man["columns"]["time"] = ["year"]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(man))
    return tmp_path / "manifest.yaml", centres


def test_load_study_end_to_end(tmp_path):
    path, centres = _polygon_study(tmp_path)
    s = load_study(path, cache_dir=tmp_path / "cache")
    assert list(s.table.columns) == ["site", "y", "treat", "lon", "lat"]
    assert s.table["lon"].between(14, 16).all() and s.table["lat"].between(44, 46).all()
    assert s.features.shape == (2, 2 * 2 * 2) and s.features.index.equals(s.table.index)
    assert s.chips.shape == (2, 2, 8, 8, 2) and s.manifest_hash == s.manifest.content_hash()
    for i, (r, c) in enumerate(centres):
        for t, year in enumerate((2020, 2021)):
            win = _field(t, 1)[r - 4:r + 4, c - 4:c + 4]
            assert s.features.loc[i, f"mean_nir_{year}"] == pytest.approx(win.mean(), abs=1e-3)
            assert s.features.loc[i, f"std_nir_{year}"] == pytest.approx(win.std(), abs=1e-3)
    again = load_study(path, cache_dir=tmp_path / "cache")
    assert again.chips.reused
    pd.testing.assert_frame_equal(again.features, s.features)


def test_long_panel_rows_get_their_own_period(tmp_path):
    path, centres = _polygon_study(tmp_path, panel=True)
    s = load_study(path, cache_dir=tmp_path / "cache")
    assert len(s.table) == 4 and s.chips.shape[0] == 2
    assert list(s.features.columns) == ["mean_red", "mean_nir", "std_red", "std_nir"]
    for i, row in s.table.iterrows():
        r, c = centres[0 if row.site == "s1" else 1]
        t = 0 if row.year == 2020 else 1
        want = _field(t, 0)[r - 4:r + 4, c - 4:c + 4].mean()
        assert s.features.loc[i, "mean_red"] == pytest.approx(want, abs=1e-3)


def test_features_none_and_csv_units(tmp_path):
    m = write_example_study(tmp_path)
    s = load_study(m, features="none")
    assert s.features is None and s.chips is None
    assert list(s.table.columns) == ["unit", "lon", "lat", "x1", "treat"]
    assert not (tmp_path / ".cache").exists()


def test_bad_study_input(tmp_path):
    path, _ = _polygon_study(tmp_path)
    man = yaml.safe_load(path.read_text())
    man["columns"]["covariates"] = ["elevation"]
    path.write_text(yaml.safe_dump(man))
    with pytest.raises(DataError, match="columns.covariates.*'elevation'"):
        load_study(path)
    with pytest.raises(DataError, match="features='pixels'"):
        load_study(path, features="pixels")
