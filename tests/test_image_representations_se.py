"""The standard-error diagnosis of the semi-synthetic suite (benchmarks/image_representations_se.py):
its pieces against the package's stack, hand computations and a known variance."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def se():
    return load_script("benchmarks/image_representations_se.py", "image_representations_se")


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    e = 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    d = (rng.uniform(size=n) < e).astype(int)
    mu0 = 1 + x[:, 0] + 0.5 * x[:, 2]
    mu1 = mu0 + 1 + 0.3 * x[:, 1]
    y = np.where(d == 1, mu1, mu0) + rng.normal(size=n)
    return x, d, y, {"e": e, "mu0": mu0, "mu1": mu1}


def test_stack_rebuilt_fit_by_fit_is_the_package_stack(se):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from geocausal.nuisance.crossfit import make_folds
    from geocausal.nuisance.stacking import PooledArms, stack_nuisances

    x, d, y, _ = _data()
    folds = np.asarray(make_folds(len(d), 4, 0, stratify=d))
    cands = {"one": x[:, :1], "all": x}
    outcome = {"ols": LinearRegression(), "pooled": PooledArms(LinearRegression())}
    ref = stack_nuisances(cands, y, d, folds, LogisticRegression(), outcome)
    ours = se.stack_fold_fits(cands, y, d, folds, LogisticRegression(), outcome)
    for k in ("e", "mu0", "mu1"):
        oof, A = ours[k]
        assert np.allclose(oof, getattr(ref, k), atol=1e-10), k
        assert A.shape == (4, len(d))
        own = folds[None, :] == np.unique(folds)[:, None]
        assert np.allclose((A * own).sum(0), oof)


def test_decompose_against_a_hand_computation(se):
    x, d, y, true = _data(seed=1)
    est = {"e": np.clip(true["e"] * 0.9 + 0.05, 0, 1), "mu0": true["mu0"] + 0.2 * x[:, 2],
           "mu1": true["mu1"] - 0.1}
    r = se.decompose(y, d, est, true, clip=0.0)
    e = est["e"]
    sh = est["mu1"] - est["mu0"] + d * (y - est["mu1"]) / e - (1 - d) * (y - est["mu0"]) / (1 - e)
    st = (true["mu1"] - true["mu0"] + d * (y - true["mu1"]) / true["e"]
          - (1 - d) * (y - true["mu0"]) / (1 - true["e"]))
    assert np.isclose(r["theta"], sh.mean()) and np.isclose(r["tn"], st.mean())
    assert np.isclose(r["D"], (sh - st).mean())
    # P: the expectation of delta given the fits and x, averaged (the outcome draws integrated)
    p = ((est["mu1"] - true["mu1"]) * (1 - true["e"] / e)
         - (est["mu0"] - true["mu0"]) * (1 - (1 - true["e"]) / (1 - e)))
    assert np.isclose(r["P"], p.mean()) and np.isclose(r["D"], r["P"] + r["N"])
    n = len(y)
    assert np.isclose(r["var_hat"], r["var_true"] + r["var_delta"] + r["cov2"])
    assert np.isclose(r["se"], sh.std() / np.sqrt(n))


def test_hajek_aipw_equals_aipw_when_weights_average_one(se):
    rng = np.random.default_rng(2)
    n = 8
    d = np.array([1, 0] * (n // 2))
    e = np.full(n, 0.5)
    y, mu0, mu1 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    th, _ = se.hajek_aipw(y, d, e, mu0, mu1, clip=0.0)
    assert np.isclose(th, se.aipw_scores(y, d, e, mu0, mu1, clip=0.0).mean())


def test_fold_fit_variance_recovers_the_variance_of_a_least_squares_fit(se):
    """For least squares on a fixed design, the variance of the out-of-fold fit at each unit
    is sigma^2 x' (X_train' X_train)^-1 x; the fold-disagreement estimate, averaged over noise
    draws and units, recovers it to the accuracy of the (K - 1) scaling, which assumes
    exchangeable folds: the ratio is 0.966 and 0.944 on two such designs, with a Monte Carlo
    SE of 0.017 over 300 noise draws, so the accept region is 0.96 +- 4 SE."""
    from sklearn.linear_model import LinearRegression

    from geocausal.nuisance.crossfit import make_folds

    rng = np.random.default_rng(3)
    n, K = 300, 5
    X = rng.normal(size=(n, 4))
    folds = np.asarray(make_folds(n, K, 0))
    Xi = np.column_stack([np.ones(n), X])
    exact = np.empty(n)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        G = np.linalg.inv(Xi[tr].T @ Xi[tr])
        exact[te] = np.einsum("ij,jk,ik->i", Xi[te], G, Xi[te])
    est = []
    for _ in range(300):
        y = X @ [1.0, -1.0, 0.5, 0.0] + rng.normal(size=n)
        A = se._fold_fits(LinearRegression(), X, y, folds)
        est.append(se.fold_fit_variance(A, folds))
    ratio = np.mean(est) / exact.mean()
    assert 0.89 < ratio < 1.03, ratio


def test_bootstrap_resamples_keep_the_arms_and_copies_share_a_fold(se):
    d = np.array([0] * 30 + [1] * 20)
    rows = se.resample_rows(d, 4, 2)
    assert len(rows) == 50 and d[rows].sum() == 20
    assert not np.array_equal(rows, se.resample_rows(d, 4, 3))
    f = se.grouped_folds(rows, d, 5, 0)
    for u in np.unique(rows):
        assert len(np.unique(f[rows == u])) == 1


def test_half_samples_keep_half_of_each_arm_and_give_the_whole_sample_variance(se):
    d = np.array([0] * 40 + [1] * 21)
    rows = se.resample_rows(d, 1, 0, half=True)
    assert len(np.unique(rows)) == len(rows) == 30 and d[rows].sum() == 10
    # for a mean, the spread of half-sample means is the whole sample mean's SE
    rng = np.random.default_rng(5)
    x = rng.normal(size=1000)
    dd = np.repeat([0, 1], 500)
    sd = np.std([x[se.resample_rows(dd, 0, b, half=True)].mean() for b in range(2000)])
    assert 0.9 < sd / (x.std() / np.sqrt(1000)) < 1.1


def test_docstring_examples_run(se):
    import doctest

    res = doctest.testmod(se, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 10 and res.failed == 0
