"""images= rows are matched to data rows by unit id, never silently by position (issue 13,
items 1 and 6): every design goes through geocausal.features.align.align_images."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import DataError, MissingImagesWarning
from geocausal.features.align import align_images
from geocausal.features.images import summary_features

LEARNERS = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
#: the designs with one learner slot (ipw, balance, placement) refuse an unused outcome slot
PROPENSITY = {"propensity": LogisticRegression()}


def _confounded(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units confounded by what their image shows; features in a frame indexed by unit id."""
    rng = np.random.default_rng(seed)
    ids = [f"site{i:03d}" for i in range(n)]
    img = rng.normal(size=(n, 3))
    x = rng.normal(size=n)
    d = rng.binomial(1, 1 / (1 + np.exp(-(1.2 * img[:, 0] + 0.3 * x))))
    y = 1.0 * d + 2.0 * img[:, 0] + x + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "d": d, "x": x, "g": rng.integers(0, 2, n)}, index=ids)
    feats = pd.DataFrame(img, index=ids, columns=["f0", "f1", "f2"])
    return data, feats


def _shuffled(frame: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=seed)


# ----------------------------------------------------------------------------- item 1
def test_shuffled_feature_rows_give_the_same_ate():
    data, feats = _confounded()
    ordered = gc.aipw("y ~ d + x", data, images=feats, learners=LEARNERS, seed=1)
    shuffled = gc.aipw("y ~ d + x", data, images=_shuffled(feats), learners=LEARNERS, seed=1)
    assert shuffled.params["d"] == pytest.approx(ordered.params["d"], abs=1e-12)
    assert shuffled.std_errors["d"] == pytest.approx(ordered.std_errors["d"], abs=1e-12)
    # extra feature rows of units not in the data are ignored
    extra = pd.concat([feats, pd.DataFrame(np.ones((2, 3)), index=["zz1", "zz2"],
                                           columns=feats.columns)])
    more = gc.aipw("y ~ d + x", data, images=_shuffled(extra), learners=LEARNERS, seed=1)
    assert more.params["d"] == pytest.approx(ordered.params["d"], abs=1e-12)
    # and the image features matter here: position-scrambled features would move the ATE
    scrambled = gc.aipw("y ~ d + x", data, images=_shuffled(feats).to_numpy(),
                        learners=LEARNERS, seed=1)
    assert abs(scrambled.params["d"] - ordered.params["d"]) > 0.3


def _design_runs():
    data, feats = _confounded(300)
    lr = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    panel = pd.concat([data.assign(unit=data.index, time=t,
                                   y=data.y + t * np.random.default_rng(t).normal(size=len(data)))
                       for t in range(3)], ignore_index=True)
    return {
        "ipw": lambda im: gc.ipw("y ~ d + x", data, images=im, learners=PROPENSITY).params,
        "balance": lambda im: gc.balance("y ~ d + x", data, images=im, learners=PROPENSITY
                                         ).set_index("term")["smd_weighted"],
        "placement": lambda im: gc.placement("d ~ x", data, images=im, learners=PROPENSITY,
                                             folds=3).params,
        "cate": lambda im: gc.cate("y ~ d + x", data, images=im, propensity=0.5,
                                   evaluate=False, learner="t", folds=3).params,
        "debias": lambda im: gc.debias("y ~ d + x", data, method="none", interval="delta",
                                       images=im, learners=PROPENSITY).params,
        "dml_panel": lambda im: gc.dml_panel("y ~ d + x", panel, unit="unit", time="time",
                                             approach="pooled", learners=lr, images=im,
                                             n_boot=0).params,
    }, feats


@pytest.mark.parametrize("design", ["ipw", "balance", "placement", "cate", "debias",
                                    "dml_panel"])
def test_every_design_aligns_images_by_unit_id(design):
    runs, feats = _design_runs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = runs[design](feats)
        b = runs[design](_shuffled(feats))
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-10)


def test_missing_units_duplicates_and_raw_lengths_raise():
    data, feats = _confounded(50)
    with pytest.raises(DataError, match=r"3 of 50 units of the data \(by index\) have no row"):
        align_images(feats.iloc[3:], data)
    dup = pd.concat([feats, feats.iloc[:2]])
    with pytest.raises(DataError, match="2 repeated unit ids"):
        align_images(dup, data)
    with pytest.raises(DataError, match="by position.*49 rows.*50 rows|49 rows without unit ids"):
        align_images(feats.to_numpy()[:49], data)
    with pytest.raises(DataError, match="set it to the unit id column"):
        align_images(feats, data.reset_index(drop=True))
    ints = feats.set_axis(range(50))
    with pytest.raises(DataError, match="match as text"):
        align_images(ints, data.set_axis([str(i) for i in range(50)]))
    with pytest.raises(DataError, match="non-numeric columns \\['label'\\]"):
        align_images(feats.assign(label="a"), data)
    with pytest.raises(DataError, match="missing_images='skip' is not one of"):
        gc.aipw("y ~ d + x", data, images=feats, options={"missing_images": "skip"})
    # a unit-id column works as the key too
    by_col = _shuffled(feats).rename_axis("unit_id").reset_index()
    al = align_images(by_col, data)
    np.testing.assert_array_equal(al.images, feats.to_numpy())


# ----------------------------------------------------------------------------- caches
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """80 units on a raster whose pixel values say where they are; confounded by the image."""
    from geocausal.data.chips import extract
    from geocausal.data.rasters import write_example_study

    folder = tmp_path_factory.mktemp("study")
    m = write_example_study(folder, n_units=80, size=64, seed=3)
    res = extract(m, progress=False)
    chips, mask = res.load()
    f = summary_features(chips, mask)[:, 0]
    z = (f - f.mean()) / f.std()
    rng = np.random.default_rng(4)
    d = rng.binomial(1, 1 / (1 + np.exp(-z)))
    data = pd.DataFrame({"y": d + 2 * z + rng.normal(size=len(z)), "d": d},
                        index=pd.Index(res.unit_ids, name="unit"))
    perm = rng.permutation(len(data))
    return res, data.iloc[perm], perm, folder


def test_chips_result_cache_path_and_long_parquet(study):
    from geocausal.encoders.embed import embed

    res, data, perm, folder = study
    chips, mask = res.load()
    kw = dict(learners=LEARNERS, folds=3, seed=2)
    by_hand = gc.aipw("y ~ d", data, images=(chips[perm], mask[perm]), **kw)
    for images in (res, res.path, str(res.path)):
        est = gc.aipw("y ~ d", data, images=images, **kw)
        assert est.params["d"] == pytest.approx(by_hand.params["d"], abs=1e-12)
        assert est.nobs == len(data)
    out = embed(res, folder / "emb.parquet", encoder="random", embed_dim=3, progress=False)
    long = pd.read_parquet(out)
    wide = long.pivot(index="unit_id", columns="period").loc[data.index.to_numpy()]
    manual = gc.aipw("y ~ d", data, images=wide.to_numpy(), **kw)
    for images in (out, str(out), long.sample(frac=1.0, random_state=0)):
        est = gc.aipw("y ~ d", data, images=images, **kw)
        assert est.params["d"] == pytest.approx(manual.params["d"], abs=1e-10)


# ----------------------------------------------------------------------------- item 6
def test_all_nodata_chips_are_dropped_with_a_count_or_imputed_on_request(study):
    res, data, perm, _ = study
    chips, mask = res.load()
    mask = mask.copy()
    empty = [int(perm[5]), int(perm[17])]  # two units whose chip is all nodata in period 2
    mask[empty, 1] = False
    ids = [res.unit_ids[i].item() for i in empty]
    kw = dict(learners=LEARNERS, folds=3, seed=2)
    images = (chips[perm], mask[perm])
    with pytest.warns(MissingImagesWarning, match=r"no usable image for 2 units \(2 data rows\)"
                                                  r".*dropped them"):
        dropped = gc.aipw("y ~ d", data, images=images, **kw)
    assert dropped.nobs == len(data) - 2
    keep = ~data.index.isin(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingImagesWarning)  # nothing missing: no warning
        ref = gc.aipw("y ~ d", data[keep], images=(chips[perm][keep], mask[perm][keep]), **kw)
    assert dropped.params["d"] == pytest.approx(ref.params["d"], abs=1e-12)
    with pytest.warns(MissingImagesWarning, match="imputed"):
        imputed = gc.aipw("y ~ d", data, images=images, options={"missing_images": "impute"}, **kw)
    assert imputed.nobs == len(data)
    with pytest.raises(DataError, match=r"no usable image for 2 units.*e\.g\. \[" + str(ids[0])):
        gc.aipw("y ~ d", data, images=images, options={"missing_images": "error"}, **kw)


def test_nan_feature_rows_follow_missing_images():
    data, feats = _confounded(60)
    feats = feats.copy()
    feats.iloc[[2, 9], 1] = np.nan
    with pytest.warns(MissingImagesWarning, match="2 units"):
        al = align_images(feats, data)
    assert len(al.data) == 58 and np.isfinite(al.images).all()
    assert set(al.missing_ids) == {feats.index[2], feats.index[9]}
    assert al.rows(np.arange(60)).tolist() == [i for i in range(60) if i not in (2, 9)]
    with pytest.warns(MissingImagesWarning, match="imputed"):
        imp = align_images(feats, data, missing_images="impute")
    assert imp.images[2, 1] == pytest.approx(np.nanmean(feats.f1.drop(feats.index[[2, 9]])))


def test_panel_frames_per_unit_or_per_row():
    rng = np.random.default_rng(3)
    units = np.repeat(np.arange(10, 30), 3)
    data = pd.DataFrame({"unit": units, "time": np.tile([0, 1, 2], 20),
                         "y": rng.normal(size=60)})
    per_unit = pd.DataFrame({"f": rng.normal(size=20)}, index=np.arange(10, 30))
    al = align_images(_shuffled(per_unit), data, unit="unit")
    np.testing.assert_array_equal(al.images[:, 0], per_unit.loc[units, "f"].to_numpy())
    data.index = [f"row{i}" for i in range(60)]
    per_row = pd.DataFrame({"f": rng.normal(size=60)}, index=data.index)
    al = align_images(_shuffled(per_row), data, unit="unit")
    np.testing.assert_array_equal(al.images[:, 0], per_row.f.to_numpy())
    # a row index 0..59 also holds every unit id 10..29: ambiguous, so refused
    with pytest.raises(DataError, match="both on the 'unit' column"):
        align_images(per_row.set_axis(range(60)), data.set_axis(range(60)), unit="unit")
    # index values that fit both keys in different orders: refused, not guessed
    one = pd.DataFrame({"unit": [2, 0, 1], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="both on the 'unit' column and on the data's index"):
        align_images(pd.DataFrame({"f": [0.1, 0.2, 0.3]}), one, unit="unit")
    named = align_images(pd.DataFrame({"f": [0.1, 0.2, 0.3]}).rename_axis("unit"), one,
                         unit="unit")
    assert named.images[:, 0].tolist() == [0.3, 0.1, 0.2]
