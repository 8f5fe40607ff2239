"""CATE for new units: CateModel.effect on new rows and new chips, the same feature path as at
fit time, a hand refit, save/load of the model, and the transport map from new rasters."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_script
from sklearn.linear_model import LinearRegression

import geocausal as gc
from geocausal.api.cate import effect
from geocausal.api.transport import transport_cate
from geocausal.data.rasters import write_geotiff
from geocausal.designs.cate_model import CateModel, chip_features, design_matrix
from geocausal.errors import DataError, DesignError, MissingImagesWarning
from geocausal.folds import fold_indices
from geocausal.formula import parse_formula

ROOT = Path(__file__).resolve().parents[1]
LIN = {"outcome": LinearRegression(), "final": LinearRegression()}


def _sim():
    return load_script("paper/eo_heterogeneity/pipeline.py", "paper_eo_heterogeneity_pipeline",
                       cache=True).simulate_trial


def _trial(n=400, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(1, 3, n),
                       "region": rng.choice(["north", "south", "west"], n),
                       "d": rng.integers(0, 2, n)},
                      index=[f"u{j}" for j in range(n)])
    df["y"] = (df.x + df.d * (1 + df.x + np.log(df.z) + (df.region == "west"))
               + rng.normal(size=n))
    return df


@pytest.fixture(scope="module")
def tab():
    df = _trial()
    est = gc.cate("y ~ d + x + np.log(z) + C(region)", df, propensity=0.5, learners=LIN,
                  folds=4, options={"evaluate": False}, seed=1)
    return df, est


def test_training_rows_equal_in_sample_predictions(tab):
    df, est = tab
    model = est.fitted
    assert isinstance(model, CateModel) and model.kind == "dr"
    parsed = parse_formula("y ~ d + x + np.log(z) + C(region)", df)
    X, names = design_matrix(parsed, df, None, "sequence", 1)
    assert tuple(names) == model.names
    got = model.effect(df.drop(columns=["y", "d"]))  # outcome and treatment are not needed
    np.testing.assert_array_equal(got.to_numpy(), model.fit.predict(X))
    assert got.index.equals(df.index) and got.name == "cate"
    # gc.effect and the Estimate take the same path
    pd.testing.assert_series_equal(effect(est, df), got)


def test_new_rows_equal_a_hand_refit(tab):
    df, est = tab
    rng = np.random.default_rng(9)
    # new units of one region only, shuffled ids: encoding and alignment as at fit time
    new = pd.DataFrame({"x": rng.normal(size=5), "z": rng.uniform(1, 3, 5),
                        "region": ["west"] * 5}, index=["p", "q", "r", "s", "t"])
    got = est.fitted.effect(new)
    # hand refit: the DR learner with known propensity 0.5 and linear outcome and final stages
    Xtr = np.column_stack([df.x, np.log(df.z), df.region == "north", df.region == "south",
                           df.region == "west"]).astype(float)
    y, d = df.y.to_numpy(), df.d.to_numpy().astype(float)
    mu0, mu1 = np.empty(len(df)), np.empty(len(df))
    for train, test in fold_indices(est.diagnostics["fold_ids"]):
        t0, t1 = train[d[train] == 0], train[d[train] == 1]
        mu0[test] = LinearRegression().fit(Xtr[t0], y[t0]).predict(Xtr[test])
        mu1[test] = LinearRegression().fit(Xtr[t1], y[t1]).predict(Xtr[test])
    phi = mu1 - mu0 + d * (y - mu1) / 0.5 - (1 - d) * (y - mu0) / 0.5
    final = LinearRegression().fit(Xtr, phi)
    Xnew = np.column_stack([new.x, np.log(new.z), np.zeros(5), np.zeros(5), np.ones(5)])
    np.testing.assert_allclose(got.to_numpy(), final.predict(Xnew), rtol=1e-10, atol=1e-10)
    assert list(got.index) == list(new.index)
    # the ATE of the estimate is the mean of the same hand-made scores
    assert est.params["d"] == pytest.approx(phi.mean(), rel=1e-12)


def test_new_rows_refused_when_they_cannot_be_encoded(tab):
    df, est = tab
    model = est.fitted
    with pytest.raises(DataError, match=r"lack the control columns \['region'\]"):
        model.effect(df[["x", "z"]])
    bad = df.drop(columns=["y", "d"]).iloc[:3].copy()
    bad["region"] = "east"  # a level never seen at fit time
    with pytest.raises(DataError, match="encoded as at fit time"):
        model.effect(bad)
    with pytest.raises(DataError, match="fitted without images"):
        model.effect(df, images=np.zeros((len(df), 4, 4, 2)))
    with pytest.raises(DataError, match="missing_images"):
        model.effect(df, missing_images="impute")
    with pytest.raises(DataError, match="feature columns"):
        model.predict(np.zeros((2, 3)))


def test_model_save_load_and_loaded_estimates(tab, tmp_path):
    df, est = tab
    model = est.fitted
    p = model.save(tmp_path / "model.joblib")
    again = CateModel.load(p)
    pd.testing.assert_series_equal(again.effect(df), model.effect(df), check_exact=True)
    with pytest.raises(DataError, match="overwrite"):
        model.save(p)
    # the safe result format leaves the fitted model (est.fitted) out without a warning;
    # effect() then says what to do
    with warnings.catch_warnings():
        warnings.simplefilter("error", gc.errors.NotSavedWarning)
        back = gc.load(est.save(tmp_path / "est.gcr"))
    assert not isinstance(back.fitted, CateModel)
    with pytest.raises(DesignError, match="CateModel.load"):
        effect(back, df)
    pd.testing.assert_series_equal(effect(again, df), model.effect(df))


@pytest.fixture(scope="module")
def world():
    sim = _sim()(300, grid=20, seed=2)
    est = gc.cate("y ~ d", sim.data, images=sim.chips, propensity=0.5, learners=LIN,
                  options={"evaluate": False}, seed=0)
    return sim, est


def test_new_chips_from_a_new_place(world):
    sim, est = world
    model = est.fitted
    chip, grid = sim.chip, sim.tau_grid.shape[0]
    # chips of the cells outside the trial (the last columns), cut from the mosaic
    cells = [(i, j) for i in range(grid) for j in range(int(grid * 0.75), grid)]
    new = np.stack([sim.mosaic[:, :, i * chip:(i + 1) * chip, j * chip:(j + 1) * chip]
                    for i, j in cells]).transpose(0, 1, 3, 4, 2)  # (N, T, H, W, C)
    got = model.effect(images=new)
    np.testing.assert_array_equal(got.to_numpy(),
                                  model.fit.predict(chip_features(new, "sequence")))
    # ids come from the data: new places named by the user, images matched by position
    ids = pd.DataFrame(index=[f"cell{i}_{j}" for i, j in cells])
    named = model.effect(ids, images=new)
    assert list(named.index) == list(ids.index)
    np.testing.assert_array_equal(named.to_numpy(), got.to_numpy())
    # the training chips give the refit's in-sample predictions
    np.testing.assert_array_equal(model.effect(images=sim.chips).to_numpy(),
                                  model.fit.predict(chip_features(sim.chips, "sequence")))
    # a unit without any valid pixel is dropped with a counted warning
    holey = new[:4].copy()
    holey[1] = np.nan
    with pytest.warns(MissingImagesWarning, match="1"):
        part = model.effect(images=holey)
    assert list(part.index) == [0, 2, 3]
    # chips of another shape (two periods instead of three) are refused
    with pytest.raises(DataError, match="features"):
        model.effect(images=new[:, :2])
    with pytest.raises(DataError, match="pass images="):
        model.effect()


def test_embeddings_frames_align_by_unit_id():
    rng = np.random.default_rng(3)
    n = 300
    ids = [f"s{j}" for j in range(n)]
    emb = pd.DataFrame(rng.normal(size=(n, 3)), index=ids, columns=["e0", "e1", "e2"])
    df = pd.DataFrame({"d": rng.integers(0, 2, n)}, index=ids)
    df["y"] = df.d * (1 + emb.e0) + rng.normal(size=n)
    est = gc.cate("y ~ d", df, images=emb.sample(frac=1, random_state=0), propensity=0.5,
                  learners=LIN, options={"evaluate": False})
    model = est.fitted
    new = pd.DataFrame(rng.normal(size=(4, 3)), index=["a", "b", "c", "e"],
                       columns=["e0", "e1", "e2"])
    data = pd.DataFrame(index=["e", "c", "a"])  # another order, and one unit left out
    got = model.effect(data, images=new)
    assert list(got.index) == ["e", "c", "a"]
    np.testing.assert_allclose(got.to_numpy(), model.fit.predict(new.loc[["e", "c", "a"]]
                                                                 .to_numpy()))
    np.testing.assert_allclose(model.effect(images=new).loc[["e", "c", "a"]], got)


def test_transport_map_from_new_rasters(world, tmp_path):
    sim, est = world
    paths = [write_geotiff(tmp_path / f"t{t}.tif", sim.mosaic[t], sim.crs, sim.transform)
             for t in range(sim.mosaic.shape[0])]
    model = est.fitted
    res = transport_cate(est, paths, tmp_path / "cate.tif", chip_size=sim.chip)
    assert res.values.shape == sim.tau_grid.shape and np.isfinite(res.values).all()
    # every trial site's window equals effect() on its chip (float32 raster)
    d = sim.data
    np.testing.assert_allclose(res.values[d.row, d.col], model.effect(images=sim.chips),
                               rtol=1e-5, atol=1e-5)
    # a model reloaded from its own file maps the same surface
    again = CateModel.load(model.save(tmp_path / "m.joblib"))
    res2 = transport_cate(again, paths, tmp_path / "cate2.tif", chip_size=sim.chip)
    np.testing.assert_array_equal(res2.values, res.values)
    # the map recovers the true CATE off the trial sites
    outside = np.s_[:, int(20 * .75):]
    assert np.corrcoef(res.values[outside].ravel(), sim.tau_grid[outside].ravel())[0, 1] > 0.5
    # windows with no valid pixel: NaN in the map, one counted warning
    holes = sim.mosaic.copy()
    holes[:, :, :sim.chip, :sim.chip] = np.nan
    hp = [write_geotiff(tmp_path / f"h{t}.tif", holes[t], sim.crs, sim.transform)
          for t in range(holes.shape[0])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res3 = transport_cate(est, hp, tmp_path / "cate3.tif", chip_size=sim.chip)
    msgs = [str(w.message) for w in caught if issubclass(w.category, MissingImagesWarning)]
    assert len(msgs) == 1 and msgs[0].startswith("1 of 400 windows")
    assert np.isnan(res3.values[0, 0]) and np.isfinite(res3.values[1:, :]).all()
