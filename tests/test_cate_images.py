"""Image inputs of gc.cate: sequence features, sequence vs single date, transport, land cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import load_script

import geocausal as gc
from geocausal.api.landcover import cate_landcover, landcover_fractions
from geocausal.api.transport import transport_cate
from geocausal.data.rasters import write_geotiff
from geocausal.designs.cate_model import chip_features
from geocausal.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _pipeline():
    return load_script("paper/eo_heterogeneity/pipeline.py", "paper_eo_heterogeneity_pipeline",
                       cache=True)


def test_chip_features_change():
    chips = np.zeros((2, 3, 4, 4, 2))
    chips[:, 2, :, :, 0] = 1.0  # band 0 rises by 1 from the first to the last period
    f = chip_features(chips, "sequence")
    # 3 periods x (2 means + 2 sds) then the change of the 4 statistics
    assert f.shape == (2, 16)
    np.testing.assert_allclose(f[:, 12:], [[1, 0, 0, 0]] * 2)
    np.testing.assert_allclose(chip_features(chips, "single"), f[:, 8:12])
    with pytest.raises(DataError, match="representation"):
        chip_features(chips, "video")


def test_multiscale_images_concatenate_features():
    rng = np.random.default_rng(1)
    n = 200
    fine, wide = rng.normal(size=(n, 2, 4, 4, 2)), rng.normal(size=(n, 2, 12, 12, 2))
    df = pd.DataFrame({"d": rng.integers(0, 2, n)})
    df["y"] = df.d * (1 + wide[:, -1, ..., 0].mean(axis=(1, 2)) * 10) + rng.normal(size=n)
    est = gc.cate("y ~ d", df, images={"fine": fine, "wide": wide}, propensity=.5,
                  options={"evaluate": False})
    assert len(est.diagnostics["features"]["names"]) == 2 * chip_features(fine).shape[1]
    with pytest.raises(DataError, match="empty"):
        gc.cate("y ~ d", df, images={}, propensity=.5, options={"evaluate": False})


def test_sequence_beats_single_date_on_change_driven_effects():
    """The effect depends on built-up growth, invisible at one date: report both fits."""
    sim_mod = _pipeline()
    res = []
    for seed in range(3):
        sim = sim_mod.simulate_trial(700, grid=36, seed=seed)
        row = {}
        for rep in ("single", "sequence"):
            est = gc.cate("y ~ d", sim.data, images=sim.chips, propensity=.5,
                          options={"n_splits": 0, "n_boot": 50, "representation": rep},
                          truth="tau_image", seed=seed)
            row[rep] = (est.diagnostics["cor_truth"], est.diagnostics["autoc"])
        res.append(row)
    cor = {k: np.mean([r[k][0] for r in res]) for k in ("single", "sequence")}
    autoc = {k: np.mean([r[k][1] for r in res]) for k in ("single", "sequence")}
    print(f"cor with true CATE: single {cor['single']:.3f}, sequence {cor['sequence']:.3f}; "
          f"AUTOC: single {autoc['single']:.3f}, sequence {autoc['sequence']:.3f}")
    assert cor["sequence"] > cor["single"] + 0.15
    assert autoc["sequence"] > autoc["single"]
    assert all(r["sequence"][0] > r["single"][0] for r in res)


def test_transport_writes_geotiff(tmp_path):
    sim = _pipeline().simulate_trial(600, grid=30, seed=4)
    est = gc.cate("y ~ d", sim.data, images=sim.chips, propensity=.5,
                  options={"evaluate": False})
    paths = [write_geotiff(tmp_path / f"t{t}.tif", sim.mosaic[t], sim.crs, sim.transform)
             for t in range(sim.mosaic.shape[0])]
    res = transport_cate(est, paths, tmp_path / "cate.tif", chip_size=sim.chip)
    assert res.values.shape == sim.tau_grid.shape
    with rasterio.open(res.path) as src:
        assert src.crs.to_string() == sim.crs
        assert src.transform.a == sim.transform.a * sim.chip
        np.testing.assert_allclose(src.read(1), res.values)
    # windows over the trial cells give the same predictions as the fitted model on the chips
    d = sim.data
    np.testing.assert_allclose(res.values[d.row, d.col],
                               est.fitted.predict(chip_features(sim.chips)),
                               rtol=1e-5, atol=1e-5)
    outside = np.s_[:, int(30 * .75):]
    cor = np.corrcoef(res.values[outside].ravel(), sim.tau_grid[outside].ravel())[0, 1]
    assert cor > 0.6
    fig = res.plot(sites=d[["cx", "cy"]].to_numpy())
    assert fig.axes[0].get_title()
    tab = gc.cate("y ~ d + x1", sim.data, images=sim.chips, propensity=.5,
                  options={"evaluate": False})
    with pytest.raises(DataError, match="tabular"):
        transport_cate(tab, paths, tmp_path / "x.tif", chip_size=sim.chip)
    write_geotiff(tmp_path / "small.tif", sim.mosaic[0][:, :64, :64], sim.crs, sim.transform)
    with pytest.raises(DataError, match="grid"):
        transport_cate(est, [paths[0], tmp_path / "small.tif", paths[2]], tmp_path / "y.tif",
                       chip_size=sim.chip)
    # the raster reader (data.windows.WindowStack) validates its options and closes files
    for kw, needle in (({"bands": [1, 99]}, "bands"), ({"stride": 0}, "stride"),
                       ({"chip_size": 10_000}, "exceeds"), ({"rows_per_batch": 0}, "rows_per")):
        with pytest.raises(DataError, match=needle):
            transport_cate(est, paths, tmp_path / "z.tif", **{"chip_size": sim.chip, **kw})
    assert not (tmp_path / "z.tif").exists()


def test_landcover_band_and_classifier():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, (40, 6, 6)).astype(float)
    chips = np.stack([codes, rng.normal(size=codes.shape)], axis=-1)
    fr = landcover_fractions(chips, band=0)
    np.testing.assert_allclose(fr["class_2"], (codes == 2).mean(axis=(1, 2)))
    # two well separated spectral classes; k-means recovers their shares exactly
    bright = rng.random((60, 8, 8)) < rng.uniform(0, 1, (60, 1, 1))
    spec = np.where(bright[..., None], [1.0, 0.0], [0.0, 1.0]) + 0.02 * rng.normal(size=(60, 8, 8, 2))
    for method in ("kmeans", "gmm"):
        f = landcover_fractions(spec, n_classes=2, method=method, seed=1)
        np.testing.assert_allclose(f["class_1"], bright.mean(axis=(1, 2)))
    share = bright.mean(axis=(1, 2))
    tau = 1 + 2 * share + 0.05 * rng.normal(size=60)
    est = cate_landcover(tau, f, reference="class_0")
    assert abs(est.params["class_1"] - 2) < 4 * est.std_errors["class_1"]
    assert est.diagnostics["r_squared"] > .9
    with pytest.raises(DataError, match="rows"):
        cate_landcover(tau[:10], f)
    with pytest.raises(DataError, match="band"):
        landcover_fractions(chips, band=5)
    seq = np.stack([spec, spec[:, ::-1]], axis=1)
    ch = landcover_fractions(seq, n_classes=2, change_from=0, seed=1)
    assert list(ch.columns) == ["class_0", "class_1", "class_0_change", "class_1_change"]


def test_compare_representations_table():
    sim = _pipeline().simulate_trial(500, grid=30, seed=2)
    specs = _pipeline().representation_specs(sim)
    from geocausal.api.cate import compare_representations

    t = compare_representations("y ~ d", sim.data, specs, propensity=.5,
                                options={"n_splits": 3, "n_boot": 50}, truth="tau",
                                folds=gc.Folds.spatial(("cx", "cy")))
    assert list(t.index) == ["tabular", "image_single", "image_sequence", "combined"]
    assert {"autoc", "autoc_se", "autoc_ratio", "qini", "blp_beta2", "cor_truth"} <= set(t.columns)
    assert t.loc["combined", "cor_truth"] > t.loc["image_single", "cor_truth"]
    assert isinstance(t, pd.DataFrame)


class ChipMeanLearner:
    """A stand-in image learner: sees flattened chips (and tabular columns) via image_shape."""

    uses_images = True  # the one mark of an image learner (geocausal.vocabulary)

    def __init__(self, image_shape=None):
        self.image_shape = image_shape

    def get_params(self, deep=True):
        return {"image_shape": self.image_shape}

    def set_params(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        return self

    def _design(self, X):
        k = int(np.prod(self.image_shape))
        chips = X[:, :k].reshape((X.shape[0], *self.image_shape))
        return np.column_stack([chips[..., 0].mean(axis=(1, 2)), X[:, k:]])

    def fit(self, X, y):
        from sklearn.linear_model import LinearRegression

        self.seen_ = X.shape
        self.model_ = LinearRegression().fit(self._design(X), y)
        return self

    def predict(self, X):
        return self.model_.predict(self._design(X))


def test_image_learner_slot_gets_raw_chips():
    rng = np.random.default_rng(0)
    n = 400
    chips = rng.normal(size=(n, 6, 6, 2))
    df = pd.DataFrame({"d": rng.integers(0, 2, n), "x": rng.normal(size=n)})
    m = chips[..., 0].mean(axis=(1, 2))
    df["tau"] = 1 + 3 * m
    df["y"] = 4 * m + df.d * df.tau + 0.1 * rng.normal(size=n)
    est = gc.cate("y ~ d + x", df, images=chips, learner="t", propensity=.5,
                  options={"evaluate": False}, learners={"outcome": ChipMeanLearner()}, truth="tau")
    model = est.fitted.models["outcome"].models[0]
    inner = model.estimator_
    assert inner.image_shape == (6, 6, 2)
    assert inner.seen_[1] == 6 * 6 * 2 + 1  # raw chips and the tabular x, no summaries
    assert est.diagnostics["cor_truth"] > 0.95
    assert est.diagnostics["features"]["raw_chips"]


def test_cate_landcover_vcov_registry_matches_statsmodels():
    """vcov='hetero' is statsmodels' HC1 for this OLS (the old default), 'iid' nonrobust,
    'HC0' HC0, {'cluster': ...} statsmodels' cluster variance; foreign names are refused."""
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    n = 120
    f = pd.DataFrame({"a": rng.random(n), "b": rng.random(n)})
    f["c"] = 1 - f.a.clip(0, .5) - f.b.clip(0, .5)
    f["site"] = np.arange(n) // 4
    tau = 1 + 2 * f.a + rng.standard_t(3, n) * (0.2 + f.b)
    X = sm.add_constant(f[["a", "b"]])
    fr = f[["a", "b", "c"]]
    for ours, theirs, kw in (("hetero", "HC1", {}), ("iid", "nonrobust", {}), ("HC0", "HC0", {}),
                             ({"cluster": f.site.to_numpy()}, "cluster",
                              {"cov_kwds": {"groups": f.site.to_numpy()}, "use_t": True})):
        est = cate_landcover(tau.to_numpy(), fr, reference="c", vcov=ours)
        ref = sm.OLS(tau, X).fit(cov_type=theirs, **kw)
        np.testing.assert_allclose(est.params.to_numpy(), ref.params.to_numpy(), rtol=1e-10)
        np.testing.assert_allclose(est.std_errors.to_numpy(), ref.bse.to_numpy(), rtol=1e-10)
    assert est.dof == 29 and est.vcov_type.startswith("cluster")
    t = cate_landcover(tau.to_numpy(), fr, reference="c").tables["coefficients"]
    assert list(t.columns) == ["term", "estimate", "std_error", "ci_low", "ci_high", "p_value"]
    for bad, needle in (("HC3", "HC3"), ("HC1", "HC1"), ("nw", "Newey-West")):
        with pytest.raises(DataError, match=needle):
            cate_landcover(tau.to_numpy(), fr, vcov=bad)
