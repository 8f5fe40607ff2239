"""Spatial, tabular and temporal joins: hand-checked answers, CRS handling, named errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, Point, box

from geocausal.data.joins import (
    align_periods,
    check_collisions,
    count_within,
    distance_to,
    join_nearest,
    join_table,
    join_within,
)
from geocausal.errors import DataError, UnmatchedJoinWarning

UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0


def _units(crs: str = UTM) -> gpd.GeoDataFrame:
    pts = [Point(X0 + 100, Y0 + 100), Point(X0 + 900, Y0 + 100), Point(X0 + 2500, Y0 + 50)]
    return gpd.GeoDataFrame({"id": ["a", "b", "c"]}, geometry=pts, crs=UTM).to_crs(crs)


def test_within_admin_regions_in_another_crs():
    regions = gpd.GeoDataFrame({"region": ["w", "e"], "pop": [10, 20]},
                               geometry=[box(X0, Y0, X0 + 500, Y0 + 500),
                                         box(X0 + 500, Y0, X0 + 1000, Y0 + 500)],
                               crs=UTM).to_crs("EPSG:4326")
    with pytest.warns(UnmatchedJoinWarning, match="1 of 3 units lie in no polygon"):
        got = join_within(_units("EPSG:3857"), regions, ["region", "pop"], prefix="adm_")
    assert got["adm_region"].tolist()[:2] == ["w", "e"] and pd.isna(got["adm_region"].iloc[2])
    assert got["adm_pop"].tolist()[:2] == [10, 20]


def test_overlapping_polygons_keep_the_first_and_warn():
    regions = gpd.GeoDataFrame({"r": [1, 2]}, geometry=[box(X0, Y0, X0 + 3000, Y0 + 500),
                                                        box(X0, Y0, X0 + 500, Y0 + 500)],
                               crs=UTM)
    with pytest.warns(UnmatchedJoinWarning, match="1 of 3 units lie in several polygons"):
        got = join_within(_units(), regions, ["r"])
    assert got["r"].tolist() == [1, 1, 1]


def test_nearest_within_distance_and_counts():
    feats = gpd.GeoDataFrame({"name": ["m1", "m2", "m3"]},
                             geometry=[Point(X0 + 100, Y0 + 400), Point(X0 + 1000, Y0 + 100),
                                       Point(X0 + 1100, Y0 + 100)], crs=UTM)
    with pytest.warns(UnmatchedJoinWarning, match="1 of 3 units have no feature"):
        got = join_nearest(_units("EPSG:4326"), feats.to_crs("EPSG:3857"), ["name"],
                           max_distance_m=1000, distance_col="dist_market")
    assert got["name"].tolist()[:2] == ["m1", "m2"] and pd.isna(got["name"].iloc[2])
    # distances in metres, computed in the units' UTM zone after two reprojections
    np.testing.assert_allclose(got["dist_market"].to_numpy()[:2], [300.0, 100.0], atol=0.05)
    assert np.isnan(got["dist_market"].iloc[2])
    n = count_within(_units("EPSG:4326"), feats, radius_m=250.0)
    assert n.tolist() == [0, 2, 0]
    assert count_within(_units(), feats, radius_m=1500.0).tolist() == [3, 3, 1]


def test_distance_to_a_boundary_reuses_signed_distance():
    line = gpd.GeoDataFrame(geometry=[LineString([(X0 + 1500, Y0 - 1000),
                                                  (X0 + 1500, Y0 + 1000)])], crs=UTM)
    side = gpd.GeoSeries([Point(X0 + 3000, Y0)], crs=UTM).to_crs("EPSG:4326").iloc[0]
    d = distance_to(_units("EPSG:4326"), line.to_crs("EPSG:4326"),
                    treated_side=(side.x, side.y))
    np.testing.assert_allclose(d, [-1400.0, -600.0, 1000.0], atol=0.5)
    np.testing.assert_allclose(distance_to(_units(), line, signed=False), [1400, 600, 1000],
                               atol=1e-6)


def test_table_join_by_key():
    table = pd.DataFrame({"id": ["a", "b", "c"], "y": [1, 2, 3]}, index=[10, 11, 12])
    other = pd.DataFrame({"id": ["c", "a"], "gdp": [3.5, 1.5]})
    with pytest.warns(UnmatchedJoinWarning, match="1 of 3 units have no row"):
        got = join_table(table, other, on="id", columns=["gdp"])
    assert got.index.tolist() == [10, 11, 12]
    assert got["gdp"].iloc[0] == 1.5 and np.isnan(got["gdp"].iloc[1]) and got["gdp"].iloc[2] == 3.5
    with pytest.raises(DataError, match="key column 'id' repeats"):
        join_table(table, pd.concat([other, other]), on="id", columns=["gdp"])
    with pytest.raises(DataError, match="no key column 'key'"):
        join_table(table, other, on="key", columns=["gdp"])


def test_align_periods_nearest_and_lag():
    periods = [2016, 2010, 2013]
    assert align_periods([2011, 2012, 2015, 2020], periods).tolist() == [2010, 2013, 2016, 2016]
    with pytest.warns(UnmatchedJoinWarning, match="1 of 4 units have no imagery period"):
        got = align_periods([2011, 2012, 2015, 2020], periods, max_gap=2)
    assert got.tolist() == [2010, 2013, 2016, None]
    # a one-year lag: the imagery of the year before the survey
    with pytest.warns(UnmatchedJoinWarning, match="1 of 3"):
        got = align_periods([2014, 2011, 2012], periods, how="exact", lag=-1)
    assert got.tolist() == [2013, 2010, None]
    assert align_periods([2012], periods, how="exact", lag=1).tolist() == [2013]
    with pytest.raises(DataError, match="how="):
        align_periods([2012], periods, how="closest")


def test_crs_and_collision_errors():
    bare = gpd.GeoDataFrame({"r": [1]}, geometry=[box(0, 0, 1, 1)])
    with pytest.raises(DataError, match="admin.gpkg has no CRS"):
        join_within(_units(), bare, ["r"], what="admin.gpkg")
    with pytest.raises(DataError, match="no column"):
        join_within(_units(), bare.set_crs(UTM), ["missing"])
    far = gpd.GeoDataFrame({"r": [1]}, geometry=[box(0, 95, 1, 96)], crs="EPSG:4326")
    with pytest.raises(DataError, match="cannot be reprojected"):
        join_within(_units(), far, ["r"])
    with pytest.raises(DataError, match=r"joins.0: joined column\(s\) \['y'\] collide"):
        check_collisions(["id", "y"], ["y", "z"], "joins.0")
    with pytest.raises(DataError, match="max_distance_m"):
        join_nearest(_units(), bare.set_crs(UTM), ["r"], max_distance_m=-1, distance_col="d")


def _study(tmp_path, joins, **extra):
    import yaml

    from geocausal.data.rasters import write_example_study

    write_example_study(tmp_path)
    data = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    data.update(joins=joins, **extra)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "manifest.yaml"


def test_manifest_joins_in_the_study_table(tmp_path):
    from geocausal.data.study import load_study
    from geocausal.data.units import load_units

    x0, y0 = 500_000.0, 5_000_000.0
    gpd.GeoDataFrame({"district": ["north", "south"]},
                     geometry=[box(x0, y0 - 320, x0 + 640, y0), box(x0, y0 - 640, x0 + 640,
                                                                      y0 - 320)],
                     crs=UTM).to_crs("EPSG:4326").to_file(tmp_path / "admin.gpkg")
    gpd.GeoDataFrame({"mkt": ["m1", "m2"]}, geometry=[Point(x0 + 100, y0 - 100),
                                                      Point(x0 + 500, y0 - 500)],
                     crs=UTM).to_file(tmp_path / "markets.gpkg")
    gpd.GeoDataFrame(geometry=[LineString([(x0 + 320, y0), (x0 + 320, y0 - 640)])],
                     crs=UTM).to_file(tmp_path / "border.gpkg")
    pd.DataFrame({"unit": [1, 2, 3, 4, 5, 6], "gdp": np.arange(6) * 1.5}).to_csv(
        tmp_path / "gdp.csv", index=False)
    path = _study(tmp_path, [
        {"kind": "within", "path": "admin.gpkg", "columns": ["district"]},
        {"kind": "nearest", "path": "markets.gpkg", "columns": ["mkt"], "max_distance_m": 2000,
         "name": "dist_mkt"},
        {"kind": "count", "path": "markets.gpkg", "radius_m": 400, "name": "n_mkt"},
        {"kind": "distance", "path": "border.gpkg", "name": "dist_border",
         "treated_side": [x0 + 600, y0 - 10]},
        {"kind": "table", "path": "gdp.csv", "on": "unit", "columns": ["gdp"]}],
        columns={"treatment": ["treat"], "covariates": ["x1", "gdp", "dist_border"]})
    s = load_study(path, features="none")
    pts = load_units(path).to_crs(UTM).geometry
    x, y = pts.x.to_numpy(), pts.y.to_numpy()
    assert s.table["district"].tolist() == np.where(y > y0 - 320, "north", "south").tolist()
    d1 = np.hypot(x - x0 - 100, y - y0 + 100)
    d2 = np.hypot(x - x0 - 500, y - y0 + 500)
    np.testing.assert_allclose(s.table["dist_mkt"], np.minimum(d1, d2), atol=0.01)
    assert s.table["mkt"].tolist() == np.where(d1 <= d2, "m1", "m2").tolist()
    assert s.table["n_mkt"].tolist() == ((d1 <= 400).astype(int) + (d2 <= 400)).tolist()
    np.testing.assert_allclose(s.table["dist_border"], x - x0 - 320, atol=0.01)
    np.testing.assert_allclose(s.table["gdp"], (s.table["unit"] - 1) * 1.5)


def test_manifest_join_errors(tmp_path):
    from geocausal.data.study import load_study
    from geocausal.errors import ManifestError

    gpd.GeoDataFrame({"x1": [1]}, geometry=[box(0, 0, 1e7, 1e7)]).to_file(tmp_path / "nocrs.gpkg")
    path = _study(tmp_path, [{"kind": "within", "path": "nocrs.gpkg", "columns": ["x1"]}])
    with pytest.raises(DataError, match=r"'joins.0': layer .*nocrs.gpkg' has no CRS"):
        load_study(path, features="none")
    path = _study(tmp_path, [{"kind": "within", "path": "nocrs.gpkg", "columns": ["x1"],
                              "crs": UTM}])
    with pytest.raises(DataError, match=r"'joins.0': joined column\(s\) \['x1'\] collide"):
        load_study(path, features="none")
    path = _study(tmp_path, [{"kind": "within", "path": "nocrs.gpkg", "columns": ["x1"],
                              "crs": UTM, "prefix": "adm_"}])
    assert load_study(path, features="none").table["adm_x1"].tolist() == [1] * 6
    path = _study(tmp_path, [{"kind": "within", "path": "missing.gpkg", "columns": ["x1"]}])
    with pytest.raises(DataError, match=r"'joins.0'.path: file 'missing.gpkg' not found"):
        load_study(path, features="none")
    path = _study(tmp_path, [{"kind": "nearest", "path": "nocrs.gpkg", "columns": ["x1"]}])
    with pytest.raises(ManifestError, match="needs"):
        load_study(path, features="none")
    path = _study(tmp_path, [], align_time={"column": "survey"})
    with pytest.raises(DataError, match="'align_time': column 'survey'"):
        load_study(path, features="none")
