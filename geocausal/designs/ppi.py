"""Prediction-powered inference (PPI) and power-tuned PPI++ for a mean, OLS and an ATE.

A few units carry a true label ``y`` next to the prediction ``yhat``; the rest only
``yhat``. PPI estimates ``lam * E[f(yhat)]`` on the unlabelled units and corrects it with the
labelled rectifier ``E[f(y) - lam * f(yhat)]``. ``lam = 1`` is PPI, ``lam = 0`` the classical
estimate on labels alone, and ``lam=None`` picks the variance-minimising value clipped to
[0, 1] (PPI++, Angelopoulos, Duchi and Zrnic 2023). The ATE uses Horvitz-Thompson
pseudo-outcomes ``A y / e - (1 - A) y / (1 - e)`` as the mean's target.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=200); yhat = y + rng.normal(0, .5, 200)
>>> yu = rng.normal(size=5000) + rng.normal(0, .5, 5000)
>>> r = ppi_mean(y, yhat, yu, lam=1.0)
>>> bool(abs(r.estimate[0] - (yu.mean() + (y - yhat).mean())) < 1e-12)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geocausal.designs.common import check_estimate, check_full_rank
from geocausal.designs.debias import check_arms, check_vector
from geocausal.errors import DataError


@dataclass(frozen=True)
class PPIResult:
    """Point estimate, variance, tuning parameter and stacked influence of a PPI fit.

    ``influence`` has the labelled rows first, then the unlabelled ones, scaled so that
    ``params - theta ~ mean(influence)`` over all ``n + N`` rows.
    """

    estimate: np.ndarray
    vcov: np.ndarray
    lam: float
    n_labelled: int
    n_unlabelled: int
    influence: np.ndarray


def _lam_check(lam: float | None) -> None:
    if lam is not None and not np.isfinite(float(lam)):
        raise DataError(f"lam must be a finite number or None, got {lam}")


def _tune(g: np.ndarray, gh: np.ndarray, ghu: np.ndarray, inv_h: np.ndarray) -> float:
    """Variance-minimising ``lam`` from the loss gradients, clipped to [0, 1]."""
    n, big_n = g.shape[0], ghu.shape[0]
    gc, ghc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ ghc + ghc.T @ gc) / n
    var_hat = np.atleast_2d(np.cov(np.concatenate([gh, ghu]).T))
    num = np.trace(inv_h @ cov @ inv_h)
    den = 2 * (1 + n / big_n) * np.trace(inv_h @ var_hat @ inv_h)
    return float(np.clip(num / den, 0.0, 1.0))


def _check_mean_inputs(y, yhat, yhat_u):
    y = check_vector(y, "labels")
    yhat = check_vector(yhat, "labelled predictions")
    yhat_u = check_vector(yhat_u, "unlabelled predictions")
    if y.size != yhat.size:
        raise DataError(f"labels have {y.size} values but labelled predictions have {yhat.size}")
    return y, yhat, yhat_u


def ppi_mean(y, yhat, yhat_unlabelled, lam: float | None = None) -> PPIResult:
    """PPI / PPI++ estimate of ``E[y]``.

    Parameters
    ----------
    y, yhat
        Labels and predictions of the ``n`` labelled units.
    yhat_unlabelled
        Predictions of the ``N`` unlabelled units.
    lam
        ``None`` (PPI++ tuning), 1 (PPI) or 0 (labels only).

    Examples
    --------
    >>> import numpy as np
    >>> r = ppi_mean(np.array([1., 2, 3]), np.array([1., 2, 3]), np.array([2., 2, 2, 2]), lam=1)
    >>> float(r.estimate[0])
    2.0
    """
    _lam_check(lam)
    y, yhat, yu = _check_mean_inputs(y, yhat, yhat_unlabelled)
    n, big_n = y.size, yu.size
    if lam is None:
        pilot = yu.mean() + (y - yhat).mean()
        lam = _tune((y - pilot)[:, None], (yhat - pilot)[:, None], (yu - pilot)[:, None],
                    np.eye(1))
    lam = float(lam)
    rect = y - lam * yhat
    imp = lam * yu
    est = imp.mean() + rect.mean()
    var = imp.var() / big_n + rect.var() / n
    tot = n + big_n
    psi = np.concatenate([(rect - rect.mean()) * tot / n, (imp - imp.mean()) * tot / big_n])
    check_estimate(est, psi, "the PPI estimate")
    check_estimate(var, None, "the PPI variance")
    return PPIResult(np.array([est]), np.array([[var]]), lam, n, big_n, psi[:, None])


def _ols_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


def _ols_grads(theta, x, y, yhat, xu, yhat_u):
    g = x * (x @ theta - y)[:, None]
    gh = x * (x @ theta - yhat)[:, None]
    ghu = xu * (xu @ theta - yhat_u)[:, None]
    return g, gh, ghu


def ppi_ols(x, y, yhat, x_unlabelled, yhat_unlabelled, lam: float | None = None,
            names: list[str] | None = None) -> PPIResult:
    """PPI / PPI++ estimate of OLS coefficients of ``y`` on ``x`` (include a constant column).

    With ``lam=None`` the point estimate uses ``lam`` tuned at the PPI (``lam=1``) pilot, and
    the variance uses ``lam`` re-tuned at that estimate (the same two steps as ppi-python's
    ``ppi_ols_ci``); ``PPIResult.lam`` is the one used in the variance.

    The covariates must have full column rank on the labelled rows (the rectifier's
    regression) and on the unlabelled rows (the imputed regression); otherwise a
    :class:`DesignError` names the collinear columns (``names``, default ``column j``). A
    rank-deficient design has no unique coefficients, and a pseudo-inverse would return one
    arbitrary solution with a meaningless (zero or astronomical) standard error.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.column_stack([np.ones(100), rng.normal(size=100)]); y = x @ [1., 2.]
    >>> xu = np.column_stack([np.ones(500), rng.normal(size=500)])
    >>> r = ppi_ols(x, y, y, xu, xu @ [1., 2.], lam=1.0)
    >>> np.round(r.estimate, 6).tolist()
    [1.0, 2.0]
    """
    _lam_check(lam)
    x = np.asarray(x, dtype=float)
    xu = np.asarray(x_unlabelled, dtype=float)
    y, yhat, yu = _check_mean_inputs(y, yhat, yhat_unlabelled)
    if x.ndim != 2 or xu.ndim != 2 or x.shape[0] != y.size or xu.shape[0] != yu.size \
            or x.shape[1] != xu.shape[1]:
        raise DataError(f"covariates have shapes {x.shape} (labelled) and {xu.shape} "
                        f"(unlabelled) for {y.size} labels and {yu.size} unlabelled predictions")
    if not (np.isfinite(x).all() and np.isfinite(xu).all()):
        raise DataError("covariates contain missing or infinite values")
    for rows, arr in (("labelled", x), ("unlabelled", xu)):
        check_full_rank(arr, names, f"PPI OLS covariates on the {rows} rows")
    n, big_n = y.size, yu.size
    hess = (x.T @ x + xu.T @ xu) / (n + big_n)
    inv_h = np.linalg.inv(hess)

    def point(lm: float) -> np.ndarray:
        return _ols_fit(xu, lm * yu) + _ols_fit(x, y - lm * yhat)

    if lam is None:
        lam_pt = _tune(*_ols_grads(point(1.0), x, y, yhat, xu, yu), inv_h)
        theta = point(lam_pt)
        lam = _tune(*_ols_grads(theta, x, y, yhat, xu, yu), inv_h)
        theta = point(lam)
    else:
        lam = float(lam)
        theta = point(lam)
    g, gh, ghu = _ols_grads(theta, x, y, yhat, xu, yu)
    if lam == 0.0:
        inv_h = np.linalg.inv(x.T @ x / n)
    rect = g - lam * gh
    imp = lam * ghu
    d = x.shape[1]
    var_u = np.atleast_2d(np.cov(imp.T)).reshape(d, d)
    var_l = np.atleast_2d(np.cov(rect.T)).reshape(d, d)
    vcov = inv_h @ (var_u / big_n + var_l / n) @ inv_h
    tot = n + big_n
    psi = np.concatenate([-(rect - rect.mean(0)) @ inv_h * tot / n,
                          -(imp - imp.mean(0)) @ inv_h * tot / big_n])
    check_estimate(theta, psi, "the PPI OLS coefficients")
    check_estimate(np.diag(vcov), None, "the PPI OLS variance")
    return PPIResult(theta, vcov, lam, n, big_n, psi)


def ht_pseudo_outcome(y: np.ndarray, treat: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """Horvitz-Thompson pseudo-outcome ``A y / e - (1 - A) y / (1 - e)`` (mean = ATE)."""
    return treat * y / propensity - (1 - treat) * y / (1 - propensity)


def ppi_ate(y, yhat, treat, propensity, yhat_unlabelled, treat_unlabelled,
            propensity_unlabelled, lam: float | None = None) -> PPIResult:
    """PPI / PPI++ ATE: :func:`ppi_mean` on Horvitz-Thompson pseudo-outcomes.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 2, 300).astype(float); y = 2 * a + rng.normal(size=300)
    >>> au = rng.integers(0, 2, 3000).astype(float); yu = 2 * au + rng.normal(size=3000)
    >>> r = ppi_ate(y, y, a, np.full(300, .5), yu, au, np.full(3000, .5), lam=1.0)
    >>> bool(abs(r.estimate[0] - 2) < 0.3)
    True
    """
    y, yhat, yu = _check_mean_inputs(y, yhat, yhat_unlabelled)
    a, e = check_arms(treat, propensity)
    au, eu = check_arms(treat_unlabelled, propensity_unlabelled)
    if a.size != y.size or au.size != yu.size:
        raise DataError(f"treatment lengths ({a.size}, {au.size}) do not match the labelled "
                        f"({y.size}) and unlabelled ({yu.size}) samples")
    return ppi_mean(ht_pseudo_outcome(y, a, e), ht_pseudo_outcome(yhat, a, e),
                    ht_pseudo_outcome(yu, au, eu), lam=lam)


#: estimands of ``gc.ppi`` in their canonical spelling
PPI_ESTIMANDS = ("mean", "ols", "ATE")


def ppi_estimate(estimand: str, y: np.ndarray, yhat: np.ndarray, labelled: np.ndarray, *,
                 x: np.ndarray | None = None, names: list[str] | None = None,
                 treat: np.ndarray | None = None, propensity: np.ndarray | None = None,
                 lam: float | None = None) -> PPIResult:
    """One PPI estimand from all units' predictions and the labelled units' truths.

    Parameters
    ----------
    estimand
        ``"mean"``, ``"ols"`` (``x`` with an intercept column) or ``"ATE"`` (``treat``,
        ``propensity``).
    y
        Labels of the labelled units (``labelled.sum()`` values).
    yhat
        Predictions of every unit.
    labelled
        ``(n,)`` boolean: which units carry a label.
    x, names, treat, propensity
        Per-unit regressors (and their names) or treatment and propensities.
    lam
        ``None`` (PPI++), 1 (PPI) or 0 (labels only).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yh = rng.normal(size=500); lab = np.arange(500) < 100
    >>> r = ppi_estimate("mean", yh[lab] + 0.1, yh, lab, lam=1.0)
    >>> round(float(r.estimate[0] - yh[~lab].mean()), 6)   # PPI: rectified by the labels
    0.1
    """
    lab = np.asarray(labelled, dtype=bool)
    if estimand == "mean":
        return ppi_mean(y, yhat[lab], yhat[~lab], lam=lam)
    if estimand == "ols":
        return ppi_ols(x[lab], y, yhat[lab], x[~lab], yhat[~lab], lam=lam, names=names)
    if estimand == "ATE":
        return ppi_ate(y, yhat[lab], treat[lab], propensity[lab], yhat[~lab], treat[~lab],
                       propensity[~lab], lam=lam)
    raise DataError(f"estimand {estimand!r} is not one of {PPI_ESTIMANDS}")
