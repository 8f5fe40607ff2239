"""Clipped propensities are counted and warned about in every design that clips them."""

from __future__ import annotations

import numpy as np
import pytest

from geocausal.designs.cate import crossfit_cate
from geocausal.designs.debias import propensity_scores
from geocausal.designs.overlap import clip_propensity
from geocausal.errors import DiagnosticWarning


def _data(n=400, seed=0, strength=6.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    e = 1 / (1 + np.exp(-strength * x[:, 0]))
    d = (rng.uniform(size=n) < e).astype(float)
    y = x[:, 0] + d + rng.normal(size=n)
    return x, y, d


def test_clip_propensity_names_where_the_count_is_and_what_to_do():
    e = np.array([0.001, 0.5, 0.995])
    with pytest.warns(DiagnosticWarning, match=r"2 propensities .*\(1 of them treated\).*"
                      r"diagnostics\['n_clipped'\]\); trim=0.01"):
        out, n = clip_propensity(e, np.array([0, 1, 1]), 0.01)
    assert n == 2 and out.tolist() == [0.01, 0.5, 0.99]
    with pytest.warns(DiagnosticWarning, match=r"\(somewhere\); do this") as rec:
        clip_propensity(e, np.array([0, 1, 1]), 0.01, where="somewhere", remedy="do this")
    assert "trim" not in str(rec[0].message)


def test_cate_counts_and_warns_about_clipped_propensities():
    x, y, d = _data()
    folds = np.arange(len(y)) % 5
    with pytest.warns(DiagnosticWarning, match=r"diagnostics\['n_clipped'\].*overlap") as rec:
        fit = crossfit_cate("dr", x, y, d, folds, clip=0.05)
    assert not any("trim=" in str(r.message) for r in rec)
    n_out = fit.n_clipped
    assert n_out > 0 and fit.e.min() >= 0.05 and fit.e.max() <= 0.95
    assert np.isclose(fit.e, 0.05).sum() + np.isclose(fit.e, 0.95).sum() >= n_out
    # nothing outside the bounds: no warning, count 0
    x2, y2, d2 = _data(strength=0.5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        fit2 = crossfit_cate("dr", x2, y2, d2, folds, clip=0.01)
    assert fit2.n_clipped == 0


def test_gc_cate_warns_once_and_keeps_the_count():
    """The evaluation's half-sample refits count their clipping silently: one warning, for the
    estimate the user sees, and its count in the diagnostics."""
    import warnings

    import pandas as pd

    import geocausal as gc

    x, y, d = _data()
    df = pd.DataFrame({"y": y, "d": d.astype(int), "x1": x[:, 0], "x2": x[:, 1]})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        est = gc.cate("y ~ d + x1 + x2", df, clip=0.05, seed=0,
                      options={"n_splits": 3, "n_boot": 49})
    clipped = [r for r in rec if "propensities are outside" in str(r.message)]
    assert len(clipped) == 1 and issubclass(clipped[0].category, DiagnosticWarning)
    assert est.diagnostics["n_clipped"] > 0
    assert str(est.diagnostics["n_clipped"]) in str(clipped[0].message)


def test_debias_propensity_counts_and_warns():
    x, _, d = _data(seed=1)
    with pytest.warns(DiagnosticWarning, match=r"propensity_clipped.*overlap"):
        e, diag = propensity_scores(d, x, fold_ids=np.arange(len(d)) % 5, clip=0.05)
    assert diag["propensity_clipped"] > 0 and e.min() >= 0.05 and e.max() <= 0.95
