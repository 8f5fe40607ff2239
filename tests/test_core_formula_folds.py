"""Formula parsing and cross-fitting splitters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression

from geocausal import DataError, DesignError, FormulaError
from geocausal.formula import parse_formula
from geocausal.nuisance import crossfit_predict, fold_indices, make_folds


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 50
    return pd.DataFrame({"y": rng.normal(size=n), "d": rng.integers(0, 2, n),
                         "x1": rng.normal(size=n), "x2": rng.normal(size=n),
                         "country": rng.choice(["a", "b", "c"], n), "year": rng.integers(1, 4, n)})


def test_roles_and_formulaic_controls(df):
    f = parse_formula("y ~ d + x1 + C(country) + np.log(x2**2) | country + year", df)
    assert (f.outcome, f.treatment) == ("y", "d")
    assert f.fixed_effects == ("country", "year")
    X = f.control_matrix(df)
    assert X.shape == (50, 1 + 3 + 1) and np.isfinite(X.to_numpy()).all()
    np.testing.assert_array_equal(f.treatment_vector(df), df.d.to_numpy(float))


@pytest.mark.parametrize("bad, match", [
    ("y d + x1", "exactly one '~'"),
    ("y ~ d ~ x", "exactly one '~'"),
    (" ~ d + x1", "no outcome"),
    ("y ~ d + x9", r"\['x9'\]"),
    ("y ~ d | a | b", "more than one"),
    ("y ~ d + (x1", "malformed"),
])
def test_bad_formulas_name_the_problem(df, bad, match):
    with pytest.raises(FormulaError, match=match):
        parse_formula(bad, df)


def test_missing_values_in_outcome_are_counted(df):
    df.loc[[1, 4], "y"] = np.nan
    with pytest.raises(FormulaError, match="'y' has 2 missing"):
        parse_formula("y ~ d", df).outcome_vector(df)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 200), k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_random_folds_partition_and_balance(n, k, seed):
    f = make_folds(n, k, seed)
    counts = np.bincount(f, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert np.array_equal(f, make_folds(n, k, seed))


def test_group_spatial_and_time_folds_keep_blocks_together():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 30, 300)
    f = make_folds(300, 5, 0, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(f[groups == g])) == 1
    coords = rng.uniform(0, 100, (300, 2))
    fs = make_folds(300, 4, 0, coords=coords, block_size=25)
    cell = np.floor((coords - coords.min(axis=0)) / 25).astype(int)
    for c in np.unique(cell, axis=0):
        sel = (cell == c).all(axis=1)
        assert len(np.unique(fs[sel])) == 1
    t = np.repeat(np.arange(10), 5)
    ft = make_folds(50, 5, 0, time=t)
    assert np.all(np.diff(ft) >= 0) and len(np.unique(ft)) == 5


def test_fold_errors():
    with pytest.raises(DataError, match="at least 2"):
        make_folds(10, 1)
    with pytest.raises(DesignError, match="3 units"):
        make_folds(3, 5)
    with pytest.raises(DesignError, match="only 2 groups"):
        make_folds(10, 3, groups=[0, 1] * 5)


def test_crossfit_is_out_of_fold():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=200)
    f = make_folds(200, 5, 0)
    pred = crossfit_predict(LinearRegression(), X, y, f)
    manual = np.empty(200)
    for tr, te in fold_indices(f):
        manual[te] = LinearRegression().fit(X[tr], y[tr]).predict(X[te])
    np.testing.assert_allclose(pred, manual)
    d = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    p = crossfit_predict(LogisticRegression(), X, d, f, method="predict_proba")
    assert ((p > 0) & (p < 1)).all()
    mu1 = crossfit_predict(LinearRegression(), X, y, f, train_mask=d == 1)
    assert mu1.shape == (200,)
