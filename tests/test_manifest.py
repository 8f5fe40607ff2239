"""Manifest validation (good and bad, hypothesis-generated bad ones), schema export, units."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from geocausal.data.manifest import json_schema, load_manifest
from geocausal.data.units import load_units
from geocausal.errors import DataError, ManifestError

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "name": "good",
    "units": {"path": "units.csv", "id": "id", "lon": "lon", "lat": "lat"},
    "rasters": [{"period": 2020, "paths": ["a.tif"], "bands": ["red", "nir", "qa"],
                 "nodata": 0, "scale": 0.0001,
                 "cloud_mask": {"band": "qa", "clear_values": [0, 1]}},
                {"period": 2021, "paths": ["b.tif", "c.tif"], "bands": ["red", "nir"]}],
    "periods": [2020, 2021],
    "chip": {"size_m": 320},
    "columns": {"outcome": ["y"], "treatment": ["d"], "covariates": ["x1", "x2"]},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("manifest")
    for name in ("a.tif", "b.tif", "c.tif"):
        (d / name).write_bytes(b"")
    pd.DataFrame({"id": [1, 2], "lon": [0.1, 0.2], "lat": [1.0, 1.1],
                  "y": [0.0, 1.0]}).to_csv(d / "units.csv", index=False)
    return d


def _write(folder: Path, data, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_good_manifest(folder):
    m = load_manifest(_write(folder, GOOD))
    assert m.ordered_periods == [2020, 2021]
    assert m.band_names == ["red", "nir"]  # the cloud-mask band is not an image band
    assert m.resolve("a.tif") == folder / "a.tif"
    assert m.role("covariates") == ["x1", "x2"] and m.role("running") == []
    assert len(m.content_hash()) == 16


BAD = [
    (lambda d: d.pop("units"), "units"),
    (lambda d: d.pop("chip"), "chip"),
    (lambda d: d["units"].pop("lon"), "units"),
    (lambda d: d["units"].update(path="u.csv"), "units.path"),
    (lambda d: d["rasters"][1]["paths"].__setitem__(1, "nope.tif"), "rasters.1.paths.1"),
    (lambda d: d["rasters"][0]["cloud_mask"].update(band="cloud"), "rasters.0"),
    (lambda d: d["rasters"][1].update(bands=["red", "red"]), "rasters.1"),
    (lambda d: d["rasters"][1].update(bands=["red", "swir"]), "(top level)"),
    (lambda d: d["chip"].update(size_px=64), "chip"),
    (lambda d: d["chip"].update(size_m=-5), "chip.size_m"),
    (lambda d: d.update(periods=[2020, 2021, 2022]), "(top level)"),
    (lambda d: d["columns"].update(outcomes=["y"]), "columns.outcomes"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["rasters"][0].update(paths=[]), "rasters.0.paths"),
    (lambda d: d["rasters"][0].update(scale="big"), "rasters.0.scale"),
]


@pytest.mark.parametrize("mutate,field", BAD)
def test_bad_manifest_names_field_and_file(folder, mutate, field):
    data = copy.deepcopy(GOOD)
    mutate(data)
    path = _write(folder, data, "bad.yaml")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert str(path) in msg and f"field '{field}" in msg, msg


def test_unreadable_manifests(folder):
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(folder / "missing.yaml")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(_write(folder, "name: [unclosed", "broken.yaml"))
    with pytest.raises(ManifestError, match="must be a mapping"):
        load_manifest(_write(folder, "- a\n- b\n", "list.yaml"))


# hypothesis: random mutations of a good manifest; each says which field it breaks
_LEAVES = [("name", None), ("units.path", "units"), ("units.id", "units"),
           ("chip.size_m", "chip"), ("rasters.0.bands", "rasters"), ("rasters.0.scale", "rasters"),
           ("rasters.1.period", "rasters"), ("periods", "periods"),
           ("rasters.0.cloud_mask.clear_values", "rasters")]
_WRONG = st.one_of(st.dictionaries(st.text("xyz", min_size=1, max_size=3), st.integers(),
                                   min_size=1, max_size=2),
                   st.lists(st.dictionaries(st.just("k"), st.integers()), min_size=1,
                            max_size=2),
                   st.just(None))


def _set(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    node[int(last) if isinstance(node, list) else last] = value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leaf=st.sampled_from(_LEAVES), value=_WRONG,
       extra=st.sampled_from([None, "units", "chip", "rasters.0", ""]))
def test_hypothesis_bad_manifests(folder, leaf, value, extra):
    data = copy.deepcopy(GOOD)
    dotted, top = leaf
    _set(data, dotted, value)
    if extra is not None:  # also add an unknown key somewhere
        target = data
        for k in filter(None, extra.split(".")):
            target = target[int(k)] if isinstance(target, list) else target[k]
        target["bogus_key"] = 1
    path = _write(folder, data, "hyp.yaml")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert str(path) in msg and "field '" in msg, msg
    named = {p.split("field '")[1].split("'")[0] for p in msg.split("; ")}
    # the broken leaf (or its parent model, for cross-field checks) is named
    assert any(n.startswith(dotted.split(".")[0]) or n == "(top level)" for n in named), msg


def test_schema_file_in_sync():
    committed = json.loads((ROOT / "data_manifests" / "schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "data_manifests/schema.json is stale: regenerate it from "
        "geocausal.data.manifest.json_schema()")


def test_units_errors_name_column_and_file(tmp_path):
    pd.DataFrame({"id": [1, 1], "lon": [0.0, 1.0], "lat": [0.0, 1.0]}).to_csv(
        tmp_path / "u.csv", index=False)
    man = {"name": "u", "units": {"path": "u.csv", "id": "id", "lon": "lon", "lat": "lat"},
           "chip": {"size_px": 4}}
    path = _write(tmp_path, man)
    with pytest.raises(DataError, match=r"u\.csv.*id column 'id'.*not unique"):
        load_units(path)
    man["units"]["id"] = "site"
    with pytest.raises(DataError, match=r"u\.csv.*id column 'site'.*not found"):
        load_units(_write(tmp_path, man))
    man["units"].update(id="id", lon="x")
    with pytest.raises(DataError, match=r"coordinate column 'x' \(units.lon\)"):
        load_units(_write(tmp_path, man))


def test_units_formats_and_crs(tmp_path):
    gdf = gpd.GeoDataFrame({"uid": ["a", "b"], "v": [1, 2]},
                           geometry=[Point(500_000, 5_000_000), Point(500_100, 5_000_000)],
                           crs="EPSG:32633")
    gdf.to_file(tmp_path / "u.gpkg")
    gdf.to_parquet(tmp_path / "u.parquet")
    for name in ("u.gpkg", "u.parquet"):
        man = {"name": "u", "units": {"path": name, "id": "uid"}, "chip": {"size_px": 4}}
        units = load_units(_write(tmp_path, man))
        assert units.crs.to_epsg() == 32633 and list(units["uid"]) == ["a", "b"]
    pd.DataFrame({"id": [1], "x": [500_000.0], "y": [5_000_000.0]}).to_csv(tmp_path / "p.csv",
                                                                          index=False)
    man = {"name": "u", "units": {"path": "p.csv", "id": "id", "lon": "x", "lat": "y",
                                  "crs": "EPSG:32633"}, "chip": {"size_px": 4}}
    assert load_units(_write(tmp_path, man)).crs.to_epsg() == 32633
