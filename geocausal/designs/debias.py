"""Debiasing ML-predicted outcomes: linear calibration (LCC) and Tweedie correctors.

When the outcome of a causal study is a prediction (a wealth map made from satellite images),
the predictions shrink toward the mean and treatment effects shrink with them. Two corrections
fitted on a calibration set of predictions ``yhat`` and truths ``y`` undo this:

* :class:`LinearCalibration` (LCC) regresses the prediction on the truth, ``yhat = m + k y``, and
  inverts it: ``(yhat - m) / k``.
* :class:`Tweedie` assumes ``y = yhat + eps`` with ``eps ~ N(0, s^2)`` independent of ``yhat``,
  so ``E[yhat | y] = y + s^2 d/dy log p(y)``; the correction is ``yhat - s^2 * score(yhat)``
  with ``s = sd(yhat - y)`` on the calibration set and the score of a Gaussian kernel density
  estimate of the predictions (analytic derivative; finite differences as an option).

Also here: the Hajek IPW contrast used downstream, its influence function, and a vectorised
joint bootstrap over the calibration set and the downstream sample.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=500)
>>> yhat = 1.0 + 0.5 * y
>>> lcc = LinearCalibration().fit(yhat, y)
>>> round(lcc.slope, 6), round(lcc.intercept, 6)
(0.5, 1.0)
>>> bool(np.allclose(lcc.transform(yhat), y))
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from geocausal.designs.common import check_values
from geocausal.designs.overlap import check_propensity, clip_propensity
from geocausal.errors import DataError, DesignError, DiagnosticWarning, OptionError
from geocausal.nuisance.crossfit import SourceRows, crossfit_predict
from geocausal.vocabulary import choice, coerce_options, default_propensity

MIN_SLOPE_ERROR = 1e-8
MIN_SLOPE_WARN = 0.2
MIN_SLOPE_T = 1.96   # t of the calibration slope below which both correctors refuse
MIN_CALIBRATION = 100
_CHUNK = 2_000_000  # kernel-matrix entries evaluated at once


# ----------------------------------------------------------------------------- validation
def check_pair(yhat: Any, y: Any, names: tuple[str, str] = ("predictions", "truths")
               ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a calibration pair: 1-D, same length, finite, not constant.

    Examples
    --------
    >>> check_pair([1.0, 2.0, 3.0], [1.0, 2.5, 2.9])[0].tolist()
    [1.0, 2.0, 3.0]
    """
    a = check_vector(yhat, names[0])
    b = check_vector(y, names[1])
    if a.shape[0] != b.shape[0]:
        raise DataError(f"calibration {names[0]} have {a.shape[0]} values but {names[1]} have "
                        f"{b.shape[0]}; pass one prediction per calibration truth")
    for arr, name in ((a, names[0]), (b, names[1])):
        if np.ptp(arr) == 0:
            raise DataError(f"calibration {name} are constant (all {arr[0]!r}); a correction "
                            "needs variation in both predictions and truths")
    return a, b


def check_vector(x: Any, name: str, min_len: int = 2) -> np.ndarray:
    """Return ``x`` as a finite 1-D float array or raise :class:`DataError` naming ``name``.

    Values beyond 1e100 in absolute value are refused too (see
    :func:`geocausal.designs.common.check_values`).
    """
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(f"{name} contain {int(bad.sum())} missing or infinite values (first at "
                        f"position {int(np.flatnonzero(bad)[0])}); drop or impute them first")
    check_values(arr, name, column=False)
    if arr.shape[0] < min_len:
        raise DataError(f"{name} need at least {min_len} values, got {arr.shape[0]}")
    return arr


def calibration_relation(yhat: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Slope ``k`` of the predictions on the truths, its classical standard error and ``t``.

    ``t = k / se(k)`` equals the t statistic of the Pearson correlation,
    ``r sqrt((n - 2) / (1 - r^2))``, so it is the same whichever variable is regressed on the
    other (both correctors use it). Under independence it follows Student's t with ``n - 2``
    degrees of freedom.

    Examples
    --------
    >>> import numpy as np
    >>> rel = calibration_relation(np.array([1., 2, 2, 4]), np.array([1., 2, 3, 4]))
    >>> round(rel["slope"], 6), round(rel["t"], 3)
    (0.9, 3.402)
    """
    n = y.size
    yc, hc = y - y.mean(), yhat - yhat.mean()
    sxx = float(yc @ yc)
    k = float(yc @ hc) / sxx
    resid = hc - k * yc
    with np.errstate(divide="ignore", invalid="ignore"):
        se = float(np.sqrt(max(float(resid @ resid), 0.0) / (n - 2) / sxx)) if n > 2 \
            else float("nan")
        t = k / se if se > 0 else (np.inf * np.sign(k) if k != 0 else 0.0)
    return {"slope": k, "slope_se": se, "t": float(t), "n": int(n),
            "corr": float(yc @ hc / np.sqrt(sxx * float(hc @ hc)))}


def check_calibration_relation(yhat: np.ndarray, y: np.ndarray,
                               names: tuple[str, str] = ("predictions", "truths")
                               ) -> dict[str, float]:
    """Refuse a calibration set whose predictions do not significantly increase with the truth.

    Both correctors need ``k > 0``, the slope of the predictions on the truths: LCC divides by
    it, and Tweedie's model ``y = yhat + noise`` implies ``cov(y, yhat) = var(yhat) > 0``. When
    ``k`` is not significantly positive (``t < 1.96``, a 5% two-sided test) the 95% confidence
    set of the corrected effect ``tau / k`` is unbounded (Fieller), LCC's delta-method interval
    is meaningless, and Tweedie's ``s^2 = var(yhat - y)`` exceeds ``var(yhat)`` so the
    correction amplifies noise while its bootstrap interval stays narrow. Both raise
    :class:`DesignError` then, as does ``k <= 1e-8``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(-1, 1, 200)
    >>> round(check_calibration_relation(0.5 * y + 0.1 * np.cos(40 * y), y)["slope"], 2)
    0.5
    """
    rel = calibration_relation(yhat, y)
    if rel["slope"] <= MIN_SLOPE_ERROR or not rel["t"] >= MIN_SLOPE_T:
        raise DesignError(
            f"calibration {names[0]} are not significantly positively related to the "
            f"{names[1]}: slope of {names[0]} on {names[1]} k = {rel['slope']:.3g} (se "
            f"{rel['slope_se']:.3g}, t = {rel['t']:.2f} < {MIN_SLOPE_T}, correlation "
            f"{rel['corr']:.3f}, n = {rel['n']}); a corrected effect tau / k has an unbounded "
            "confidence set (LCC would divide by a slope that may be 0 or negative, Tweedie "
            "would amplify noise). Use a better predictor or a larger calibration set")
    return rel


def _warn_small(n: int) -> None:
    if n < MIN_CALIBRATION:
        warnings.warn(f"only {n} calibration units (fewer than {MIN_CALIBRATION}); the "
                      "correction is noisy, prefer a larger calibration set", DiagnosticWarning,
                      stacklevel=3)


# ----------------------------------------------------------------------------- KDE score
def bandwidth(sample: np.ndarray, rule: str | float = "scott", seed: int = 0,
              max_cv: int = 2000) -> float:
    """Gaussian-kernel bandwidth: ``"scott"``, ``"silverman"``, ``"cv"`` or a positive number.

    Scott and Silverman match :class:`scipy.stats.gaussian_kde` in one dimension
    (``sd * n**(-1/5)`` and ``sd * (3n/4)**(-1/5)``); ``"cv"`` maximises the leave-one-out
    log-likelihood (on a random subsample of at most ``max_cv`` points).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=1000)
    >>> bool(np.isclose(bandwidth(x, "scott"), x.std(ddof=1) * 1000 ** -0.2))
    True
    """
    x = np.asarray(sample, dtype=float)
    n = x.shape[0]
    sd = x.std(ddof=1)
    if isinstance(rule, int | float) and not isinstance(rule, bool):
        if not rule > 0:
            raise DataError(f"bandwidth must be positive, got {rule}")
        return float(rule)
    if rule == "scott":
        return float(sd * n ** (-0.2))
    if rule == "silverman":
        return float(sd * (n * 0.75) ** (-0.2))
    if rule == "cv":
        if n > max_cv:
            x = np.random.default_rng(seed).choice(x, max_cv, replace=False)
        d2 = (x[:, None] - x[None, :]) ** 2
        np.fill_diagonal(d2, np.inf)

        def nll(log_h: float) -> float:
            h = np.exp(log_h)
            ll = logsumexp(-d2 / (2 * h * h), axis=1) - np.log((x.size - 1) * h)
            return -float(ll.sum())

        h0 = np.log(sd * n ** (-0.2))
        res = optimize.minimize_scalar(nll, bounds=(h0 - np.log(20), h0 + np.log(5)),
                                       method="bounded", options={"xatol": 1e-4})
        return float(np.exp(res.x))
    raise DataError(f"bandwidth rule '{rule}' is not one of 'scott', 'silverman', 'cv' or a "
                    "positive number")


def _chunks(n_eval: int, m: int) -> list[slice]:
    step = max(1, _CHUNK // max(m, 1))
    return [slice(i, min(i + step, n_eval)) for i in range(0, n_eval, step)]


def kde_log_density(x: np.ndarray, sample: np.ndarray, h: float) -> np.ndarray:
    """Log density of a Gaussian KDE with bandwidth ``h`` built on ``sample``, at ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> s = np.random.default_rng(1).normal(size=300)
    >>> kde = stats.gaussian_kde(s)
    >>> h = float(np.sqrt(kde.covariance[0, 0]))
    >>> bool(np.allclose(kde_log_density(s[:5], s, h), kde.logpdf(s[:5])))
    True
    """
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    m = sample.shape[0]
    for sl in _chunks(x.shape[0], m):
        z = (x[sl, None] - sample[None, :]) / h
        out[sl] = logsumexp(-0.5 * z * z, axis=1)
    return out - np.log(m * h * np.sqrt(2 * np.pi))


def kde_score(x: np.ndarray, sample: np.ndarray, h: float, derivative: str = "analytic",
              delta: float | None = None) -> np.ndarray:
    """Score ``d/dx log p(x)`` of a Gaussian KDE on ``sample`` with bandwidth ``h``.

    ``derivative="analytic"`` uses ``sum_i w_i(x) (x_i - x) / h^2`` with softmax kernel weights
    ``w_i(x)``; ``"fd"`` is a central finite difference of the log density with step ``delta``
    (default ``1e-3 * sd(sample)``).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(2).normal(size=400)
    >>> a = kde_score(np.array([0.5]), s, 0.3)
    >>> f = kde_score(np.array([0.5]), s, 0.3, derivative="fd")
    >>> bool(abs(a[0] - f[0]) < 1e-5)
    True
    """
    x = np.asarray(x, dtype=float)
    if derivative == "fd":
        d = float(delta) if delta is not None else 1e-3 * float(np.std(sample))
        return (kde_log_density(x + d, sample, h) - kde_log_density(x - d, sample, h)) / (2 * d)
    if derivative != "analytic":
        raise DataError(f"derivative '{derivative}' is not 'analytic' or 'fd'")
    out = np.empty_like(x)
    for sl in _chunks(x.shape[0], sample.shape[0]):
        diff = sample[None, :] - x[sl, None]
        logw = -0.5 * (diff / h) ** 2
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        out[sl] = (w * diff).sum(axis=1) / w.sum(axis=1) / (h * h)
    return out


# ----------------------------------------------------------------------------- correctors
def _support_warning(yhat: np.ndarray, lo: float, hi: float) -> int:
    out = int(((yhat < lo) | (yhat > hi)).sum())
    if out:
        warnings.warn(f"{out} of {yhat.size} predictions lie outside the calibration support "
                      f"[{lo:.4g}, {hi:.4g}]; the correction extrapolates there",
                      DiagnosticWarning, stacklevel=3)
    return out


def _not_fitted(name: str) -> DesignError:
    return DesignError(f"{name} is not fitted; call .fit(calibration_predictions, "
                       "calibration_truths) first")


def _calibration_pair(corrector: LinearCalibration | Tweedie) -> tuple[np.ndarray, np.ndarray]:
    """The calibration predictions and truths of a fitted corrector (else the not-fitted error)."""
    yc, ytc = corrector.cal_predictions, corrector.cal_truths
    if yc is None or ytc is None:
        raise _not_fitted(type(corrector).__name__)
    return yc, ytc


@dataclass(frozen=True)
class LinearCalibration:
    """Linear calibration correction (LCC): ``(yhat - m) / k`` from ``yhat = m + k y``.

    ``fit`` returns a new, fitted corrector (the object is frozen). ``k <= 1e-8`` or a slope
    that is not significantly positive (``t < 1.96``, see :func:`check_calibration_relation`)
    is an error; ``k < 0.2`` and fewer than 100 calibration units are warnings.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(-2, 2, 200)
    >>> lcc = LinearCalibration().fit(0.5 * y, y)
    >>> lcc.transform(np.array([1.0])).tolist()
    [2.0]
    """

    intercept: float = float("nan")
    slope: float = float("nan")
    n_cal: int = 0
    support: tuple[float, float] = (float("nan"), float("nan"))
    slope_t: float = float("nan")
    cal_predictions: np.ndarray | None = field(default=None, repr=False)
    cal_truths: np.ndarray | None = field(default=None, repr=False)

    name = "lcc"

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has been called."""
        return self.cal_predictions is not None

    def fit(self, yhat_cal: Any, y_cal: Any) -> LinearCalibration:
        """Fit ``yhat = m + k y`` by OLS on the calibration pair; return the fitted corrector."""
        yhat, y = check_pair(yhat_cal, y_cal)
        _warn_small(y.size)
        k, m = lcc_coefficients(yhat, y)
        if k <= MIN_SLOPE_ERROR:
            raise DesignError(f"calibration slope k = {k:.3g} <= {MIN_SLOPE_ERROR:g}: the "
                              "predictions do not increase with the truth, LCC cannot invert "
                              "them (they are not significantly positively related)")
        rel = check_calibration_relation(yhat, y)
        if k < MIN_SLOPE_WARN:
            warnings.warn(f"calibration slope k = {k:.3g} < {MIN_SLOPE_WARN}: LCC multiplies "
                          f"effects by {1 / k:.1f}, expect wide intervals", DiagnosticWarning,
                          stacklevel=2)
        return replace(self, intercept=m, slope=k, n_cal=int(y.size),
                       support=(float(yhat.min()), float(yhat.max())),
                       slope_t=rel["t"], cal_predictions=yhat, cal_truths=y)

    def transform(self, yhat: Any) -> np.ndarray:
        """Corrected outcomes ``(yhat - m) / k``; warns with a count outside the support."""
        if not self.fitted:
            raise _not_fitted("LinearCalibration")
        x = check_vector(yhat, "predictions", min_len=1)
        _support_warning(x, *self.support)
        return (x - self.intercept) / self.slope

    def influence(self) -> np.ndarray:
        """``(n_cal, 2)`` influence functions of ``(m, k)`` on the calibration set."""
        if not self.fitted:
            raise _not_fitted("LinearCalibration")
        return lcc_influence(*_calibration_pair(self), self.intercept, self.slope)

    def diagnostics(self) -> dict[str, Any]:
        """Fitted quantities as a plain dict."""
        return {"method": "lcc", "intercept": self.intercept, "slope": self.slope,
                "calibration_t": self.slope_t, "n_cal": self.n_cal, "support": self.support}


def lcc_coefficients(yhat: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
                     ) -> tuple[Any, Any]:
    """OLS slope and intercept of ``yhat`` on ``y``; ``w`` (B, n) gives B weighted fits at once.

    Examples
    --------
    >>> import numpy as np
    >>> k, m = lcc_coefficients(np.array([1., 2, 3]), np.array([0., 2, 4]))
    >>> float(k), float(m)
    (0.5, 1.0)
    """
    if w is None:
        yc = y - y.mean()
        k = float(yc @ (yhat - yhat.mean()) / (yc @ yc))
        return k, float(yhat.mean() - k * y.mean())
    sw = w.sum(axis=1)
    my, mh = w @ y / sw, w @ yhat / sw
    cov = w @ (y * yhat) / sw - my * mh
    var = w @ (y * y) / sw - my * my
    k = cov / var
    return k, mh - k * my


def lcc_influence(yhat: np.ndarray, y: np.ndarray, m: float, k: float) -> np.ndarray:
    """Influence functions of the reverse regression's ``(m, k)``, shape ``(n, 2)``."""
    yc = y - y.mean()
    e = yhat - m - k * y
    psi_k = yc * e / np.mean(yc * yc)
    psi_m = e - y.mean() * psi_k
    return np.column_stack([psi_m, psi_k])


@dataclass(frozen=True)
class Tweedie:
    """Tweedie correction ``yhat - s^2 * score(yhat)``.

    ``s^2`` is the variance of ``yhat - y`` on the calibration set; the score is that of a
    Gaussian KDE of the predictions (by default the calibration predictions; ``fit(...,
    score_sample=yhat_downstream)`` uses other predictions, as in the paper's simulation).

    Parameters
    ----------
    bandwidth
        ``"scott"`` (default), ``"silverman"``, ``"cv"`` or a positive number.
    derivative
        ``"analytic"`` (default) or ``"fd"`` (central finite difference with step ``delta``).
    delta
        Finite-difference step (default ``1e-3 * sd``).
    score
        Optional callable ``score(x)`` replacing the KDE (e.g. a known closed form).

    ``fit`` refuses (:class:`DesignError`) a calibration set whose predictions are not
    significantly positively related to the truths (:func:`check_calibration_relation`), as LCC
    does: the correction would amplify noise and its interval would not show it.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> yhat = rng.normal(0, np.sqrt(0.5), 4000)
    >>> y = yhat + rng.normal(0, np.sqrt(0.5), 4000)
    >>> tw = Tweedie().fit(yhat, y)
    >>> round(float(np.polyfit(y, tw.transform(yhat), 1)[0]), 1)
    1.0
    """

    bandwidth: str | float = "scott"
    derivative: str = "analytic"
    delta: float | None = None
    score: Any = field(default=None, repr=False)
    seed: int = 0
    sigma2: float = float("nan")
    h: float = float("nan")
    n_cal: int = 0
    support: tuple[float, float] = (float("nan"), float("nan"))
    score_sample: np.ndarray | None = field(default=None, repr=False)
    score_source: str = "calibration"
    slope_t: float = float("nan")
    cal_predictions: np.ndarray | None = field(default=None, repr=False)
    cal_truths: np.ndarray | None = field(default=None, repr=False)

    name = "tweedie"

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has been called."""
        return self.cal_predictions is not None

    def fit(self, yhat_cal: Any, y_cal: Any, score_sample: Any = None) -> Tweedie:
        """Estimate ``s^2`` and the KDE bandwidth; return the fitted corrector."""
        yhat, y = check_pair(yhat_cal, y_cal)
        _warn_small(y.size)
        rel = check_calibration_relation(yhat, y)
        sample = yhat if score_sample is None else check_vector(score_sample, "score_sample")
        if np.ptp(sample) == 0:
            raise DataError("score_sample predictions are constant; the KDE score needs spread")
        h = float("nan") if self.score is not None else bandwidth(sample, self.bandwidth,
                                                                  self.seed)
        return replace(self, sigma2=float(np.var(yhat - y, ddof=1)), h=h, n_cal=int(y.size),
                       support=(float(yhat.min()), float(yhat.max())), score_sample=sample,
                       score_source="calibration" if score_sample is None else "external",
                       slope_t=rel["t"], cal_predictions=yhat, cal_truths=y)

    def with_score_sample(self, sample: Any) -> Tweedie:
        """The same fit with the KDE rebuilt on other predictions (bandwidth re-chosen)."""
        if not self.fitted:
            raise _not_fitted("Tweedie")
        return self.fit(self.cal_predictions, self.cal_truths, score_sample=sample)

    def score_fn(self, x: Any) -> np.ndarray:
        """The estimated score ``d/dy log p(y)`` of the predictions at ``x``."""
        if not self.fitted:
            raise _not_fitted("Tweedie")
        x = np.asarray(x, dtype=float)
        if self.score is not None:
            return np.asarray(self.score(x), dtype=float)
        if self.score_sample is None:
            raise _not_fitted("Tweedie")
        return kde_score(x, self.score_sample, self.h, self.derivative, self.delta)

    def transform(self, yhat: Any) -> np.ndarray:
        """Corrected outcomes ``yhat - s^2 * score(yhat)``; warns with a count outside support."""
        if not self.fitted:
            raise _not_fitted("Tweedie")
        x = check_vector(yhat, "predictions", min_len=1)
        _support_warning(x, *self.support)
        return x - self.sigma2 * self.score_fn(x)

    def diagnostics(self) -> dict[str, Any]:
        """Fitted quantities as a plain dict."""
        return {"method": "tweedie", "sigma": float(np.sqrt(self.sigma2)), "bandwidth": self.h,
                "bandwidth_rule": str(self.bandwidth), "derivative": self.derivative,
                "score_source": self.score_source, "calibration_t": self.slope_t,
                "n_cal": self.n_cal, "support": self.support}


def make_corrector(method: str, **options: Any) -> LinearCalibration | Tweedie:
    """An unfitted corrector by name: ``"lcc"`` or ``"tweedie"``."""
    if method == "lcc":
        return LinearCalibration()
    if method == "tweedie":
        return Tweedie(**options)
    raise DataError(f"method '{method}' is not one of 'lcc', 'tweedie'")


# ----------------------------------------------------------------------------- downstream IPW
def check_arms(treat: Any, propensity: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a binary treatment with both arms and its propensities, one per unit.

    The propensities go through the one overlap check of every design,
    :func:`geocausal.designs.overlap.check_propensity` (values at 0 or 1 are refused, extreme
    ones warned about with counts).

    Examples
    --------
    >>> a, e = check_arms([0, 1, 1], [0.4, 0.5, 0.6])
    >>> a.tolist()
    [0.0, 1.0, 1.0]
    >>> check_arms([1, 1], [0.5, 0.5])
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: every unit has treatment 1; a contrast needs both arms
    """
    a = check_vector(treat, "treatment")
    if not np.isin(a, (0.0, 1.0)).all():
        raise DataError("treatment must be binary 0/1; found values "
                        f"{sorted(set(np.unique(a)) - {0.0, 1.0})[:5]}")
    if a.min() == a.max():
        raise DesignError(f"every unit has treatment {int(a[0])}; a contrast needs both arms")
    e = check_vector(propensity, "propensity")
    if e.shape != a.shape:
        raise DataError(f"propensity has {e.size} values but treatment has {a.size}")
    check_propensity(e, a)
    return a, e


def hajek_weights(treat: np.ndarray, propensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised inverse-propensity weights of the treated and control arms."""
    return treat / propensity, (1 - treat) / (1 - propensity)


def hajek_ate(y: np.ndarray, treat: np.ndarray, propensity: np.ndarray,
              w: np.ndarray | None = None) -> Any:
    """Hajek IPW contrast; ``y`` may be (n,) or (B, n); ``w`` (B, n) are resampling weights.

    Examples
    --------
    >>> import numpy as np
    >>> float(hajek_ate(np.array([1., 2, 4, 5]), np.array([0., 0, 1, 1]), np.full(4, .5)))
    3.0
    """
    w1, w0 = hajek_weights(treat, propensity)
    if w is not None:
        w1, w0 = w * w1, w * w0
    return (w1 * y).sum(-1) / w1.sum(-1) - (w0 * y).sum(-1) / w0.sum(-1)


def hajek_influence(y: np.ndarray, treat: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """Influence function of the Hajek contrast (propensity treated as known)."""
    w1, w0 = hajek_weights(treat, propensity)
    mu1 = (w1 * y).sum() / w1.sum()
    mu0 = (w0 * y).sum() / w0.sum()
    return w1 * (y - mu1) / w1.mean() - w0 * (y - mu0) / w0.mean()


# ----------------------------------------------------------------------------- inference
def resampling_weights(n: int, n_boot: int, rng: np.random.Generator,
                       groups: np.ndarray | None = None) -> np.ndarray:
    """``(n_boot, n)`` multinomial counts of a nonparametric bootstrap (n draws with replacement).

    With ``groups`` (one label per unit) whole groups are drawn with replacement (a cluster
    bootstrap): every unit of a group gets the number of times its group was drawn.

    Examples
    --------
    >>> import numpy as np
    >>> w = resampling_weights(5, 3, np.random.default_rng(0))
    >>> w.sum(axis=1).tolist()
    [5.0, 5.0, 5.0]
    >>> g = np.array(["a", "a", "b", "c", "c"])
    >>> wg = resampling_weights(5, 4, np.random.default_rng(0), groups=g)
    >>> bool((wg[:, 0] == wg[:, 1]).all() and (wg[:, 3] == wg[:, 4]).all())
    True
    """
    if groups is None:
        return _multinomial_counts(n, n_boot, rng)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise DataError(f"cluster labels have shape {groups.shape}, expected ({n},)")
    _, codes = np.unique(groups, return_inverse=True)
    n_groups = int(codes.max()) + 1
    if n_groups < 2:
        raise DataError("a cluster bootstrap needs at least 2 clusters")
    return _multinomial_counts(n_groups, n_boot, rng)[:, codes]


def _multinomial_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


def _grid_interp(x: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.clip(np.searchsorted(grid, x) - 1, 0, grid.size - 2)
    t = (x - grid[idx]) / (grid[idx + 1] - grid[idx])
    return idx, np.clip(t, 0.0, 1.0)


def weighted_kde_score_grid(grid: np.ndarray, sample: np.ndarray, h: float, w: np.ndarray
                            ) -> np.ndarray:
    """KDE score on ``grid`` for B weightings ``w`` (B, m) of ``sample``; returns (B, G)."""
    z = (grid[:, None] - sample[None, :]) / h
    k = np.exp(-0.5 * z * z)                          # (G, m)
    num = w @ (k * sample[None, :]).T                 # (B, G)
    den = w @ k.T
    tiny = np.finfo(float).tiny
    return (num / np.maximum(den, tiny) - grid[None, :]) / (h * h)


def joint_bootstrap(corrector: LinearCalibration | Tweedie, yhat: np.ndarray, treat: np.ndarray,
                    propensity: np.ndarray, n_boot: int = 999, seed: int = 0,
                    score_from: str = "auto", grid_size: int = 512,
                    groups: np.ndarray | None = None,
                    cal_groups: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap draws of the corrected Hajek contrast, resampling calibration and downstream.

    Each draw resamples the calibration set (refitting ``k`` or ``s^2`` and, when the KDE was
    built on calibration predictions, the KDE) and the downstream sample (the contrast and, when
    the KDE was built on downstream predictions, the KDE) with multinomial weights. Everything is
    a few matrix products: no loop over draws. The KDE bandwidth is held at its full-sample value;
    the score is evaluated on a grid of ``grid_size`` points and interpolated linearly.

    ``score_from`` is ``"calibration"``, ``"downstream"`` or ``"auto"`` (the corrector's KDE
    sample: downstream when it has the downstream sample's length and values, else calibration).
    ``groups`` and ``cal_groups`` (cluster labels of the downstream and calibration units) make
    the draws resample whole clusters of that sample; without them units are resampled.

    Returns
    -------
    numpy.ndarray
        ``(n_boot,)`` draws of the corrected contrast.
    """
    yc, ytc = _calibration_pair(corrector)
    rng = np.random.default_rng(seed)
    wc = resampling_weights(yc.size, n_boot, rng, cal_groups)
    wd = resampling_weights(yhat.size, n_boot, rng, groups)
    naive = hajek_ate(yhat, treat, propensity, wd)
    if isinstance(corrector, LinearCalibration):
        k, _ = lcc_coefficients(yc, ytc, wc)
        if (k <= MIN_SLOPE_ERROR).any():
            raise DesignError(f"{int((k <= MIN_SLOPE_ERROR).sum())} bootstrap draws have a "
                              "calibration slope <= 1e-8; the calibration set is too weak")
        return naive / k
    if not isinstance(corrector, Tweedie):
        raise DesignError(f"the joint bootstrap supports LinearCalibration and Tweedie, not "
                          f"{type(corrector).__name__}")
    r = yc - ytc
    sw = wc.sum(axis=1)
    mr = wc @ r / sw
    s2 = (wc @ (r * r) / sw - mr * mr) * yc.size / (yc.size - 1)
    if corrector.score is not None:
        sc = corrector.score_fn(yhat)
        return naive - s2 * hajek_ate(sc, treat, propensity, wd)
    sample = corrector.score_sample
    if sample is None:
        raise _not_fitted("Tweedie")
    if score_from == "auto":
        same = sample.size == yhat.size and np.array_equal(sample, yhat)
        score_from = "downstream" if same else (
            "calibration" if corrector.score_source == "calibration" else "fixed")
    if score_from == "downstream":
        wk = wd
    elif score_from == "calibration":
        wk = wc
    elif score_from == "fixed":
        wk = np.ones((n_boot, sample.size))
    else:
        raise DataError(f"score_from '{score_from}' is not 'auto', 'calibration' or 'downstream'")
    h = corrector.h
    lo = min(yhat.min(), sample.min()) - h
    hi = max(yhat.max(), sample.max()) + h
    grid = np.linspace(lo, hi, grid_size)
    sg = weighted_kde_score_grid(grid, sample, h, wk)          # (B, G)
    idx, t = _grid_interp(yhat, grid)
    sc = sg[:, idx] * (1 - t) + sg[:, idx + 1] * t             # (B, n)
    return naive - s2 * hajek_ate(sc, treat, propensity, wd)


def lcc_delta_influence(corrector: LinearCalibration, yhat: np.ndarray, treat: np.ndarray,
                        propensity: np.ndarray) -> tuple[float, np.ndarray]:
    """Delta method for the LCC contrast ``tau(yhat) / k`` with two independent samples.

    Returns the estimate and a stacked influence vector of length ``n + n_cal`` (downstream
    rows first) scaled so that ``sum(psi**2) / (n + n_cal)**2`` is the delta-method variance
    ``Var(tau_naive) / k^2 + tau_naive^2 Var(k) / k^4``.
    """
    n, nc = yhat.size, corrector.n_cal
    tot = n + nc
    naive = float(hajek_ate(yhat, treat, propensity))
    k = corrector.slope
    psi_d = hajek_influence(yhat, treat, propensity) / k * (tot / n)
    psi_k = corrector.influence()[:, 1]
    psi_c = -naive / k ** 2 * psi_k * (tot / nc)
    return naive / k, np.concatenate([psi_d, psi_c])


# ----------------------------------------------------------------------------- options
BANDWIDTH_RULES = ("scott", "silverman", "cv")
DERIVATIVES = ("analytic", "fd")
SCORE_SAMPLES = ("calibration", "downstream")
METHODS = ("tweedie", "lcc", "none")
INTERVALS = ("bootstrap", "delta", "fixed")


@dataclass(frozen=True)
class TweedieOptions:
    """The Tweedie corrector's kernel-density options (``gc.TweedieOptions``).

    Parameters
    ----------
    bandwidth : {"scott", "silverman", "cv"} or float
        KDE bandwidth rule or a positive number.
    derivative : {"analytic", "fd"}
        Score derivative: analytic or central finite differences.
    score_sample : {"calibration", "downstream"}
        The predictions the KDE of the score is built on.

    Examples
    --------
    >>> TweedieOptions.coerce({"bandwidth": "Silverman"}).bandwidth
    'silverman'
    >>> TweedieOptions(bandwidth=-1.0)
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: debias: bandwidth must be 'scott', 'silverman', 'cv' or a positive number, got -1.0
    """

    bandwidth: Literal["scott", "silverman", "cv"] | float = "scott"
    derivative: Literal["analytic", "fd"] = "analytic"
    score_sample: Literal["calibration", "downstream"] = "calibration"

    def __post_init__(self) -> None:
        bw = self.bandwidth
        if isinstance(bw, str):
            object.__setattr__(self, "bandwidth", choice("bandwidth", bw, BANDWIDTH_RULES,
                                                         design="debias"))
        elif isinstance(bw, bool) or not isinstance(bw, int | float) or not (
                np.isfinite(bw) and bw > 0):
            raise OptionError(f"debias: bandwidth must be 'scott', 'silverman', 'cv' or a "
                              f"positive number, got {bw!r}")
        object.__setattr__(self, "derivative", choice("derivative", self.derivative,
                                                      DERIVATIVES, design="debias"))
        object.__setattr__(self, "score_sample", choice("score_sample", self.score_sample,
                                                        SCORE_SAMPLES, design="debias"))

    @classmethod
    def coerce(cls, value: TweedieOptions | dict | None) -> TweedieOptions:
        """The options from a :class:`TweedieOptions`, a dict of its fields, or None."""
        return coerce_options(cls, value, "tweedie")


# ----------------------------------------------------------------------------- calibration
def calibration_arrays(calibration: Any, prediction: str, truth: str
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(predictions, truths)`` of a calibration frame or pair.

    Examples
    --------
    >>> import pandas as pd
    >>> y = np.linspace(0, 1, 150)
    >>> p, t = calibration_arrays(pd.DataFrame({"p": 0.5 * y, "t": y}), "p", "t")
    >>> p.shape, t.shape
    ((150,), (150,))
    """
    import pandas as pd

    if isinstance(calibration, pd.DataFrame):
        for col in (prediction, truth):
            if col not in calibration.columns:
                raise DataError(f"calibration frame has no column '{col}' (columns: "
                                f"{list(calibration.columns)[:10]}); name the prediction and "
                                "truth columns with prediction= and truth=")
        names = (f"predictions '{prediction}'", f"truths '{truth}'")
        pair = check_pair(calibration[prediction].to_numpy(), calibration[truth].to_numpy(),
                          names)
        check_calibration_relation(*pair, names)
        return pair
    if isinstance(calibration, tuple | list) and len(calibration) == 2:
        pair = check_pair(*calibration)
        check_calibration_relation(*pair)
        return pair
    raise DataError("calibration must be a DataFrame with prediction and truth columns, a "
                    f"(predictions, truths) pair or a fitted corrector; got "
                    f"{type(calibration).__name__}")


def fit_corrector(predictions: Any, truths: Any, method: str = "tweedie",
                  **options: Any) -> LinearCalibration | Tweedie:
    """Fit an LCC (``method="lcc"``) or Tweedie corrector on a calibration pair.

    ``options`` go to :class:`Tweedie` (``bandwidth``, ``derivative``, ``delta``, ``score``,
    ``seed``); ``score_sample=`` builds the KDE on other predictions.

    Examples
    --------
    >>> y = np.linspace(0, 1, 150)
    >>> round(fit_corrector(2 + 0.5 * y, y, method="lcc").slope, 10)
    0.5
    """
    score_sample = options.pop("score_sample", None)
    corrector = make_corrector(method, **options)
    if isinstance(corrector, Tweedie):
        return corrector.fit(predictions, truths, score_sample=score_sample)
    if options or score_sample is not None:
        raise OptionError(f"method='lcc' takes no options; got {sorted(options)}"
                          f"{' and score_sample' if score_sample is not None else ''}")
    return corrector.fit(predictions, truths)


def resolve_corrector(calibration: Any, method: str, prediction: str, truth: str,
                      tweedie: TweedieOptions, yhat: np.ndarray, seed: int = 0
                      ) -> LinearCalibration | Tweedie:
    """The fitted corrector of ``gc.debias``: given, or fitted on the calibration data (the
    Tweedie KDE on the downstream predictions ``yhat`` when ``score_sample="downstream"``).
    """
    if isinstance(calibration, LinearCalibration | Tweedie):
        corrector = calibration
        if not corrector.fitted:
            raise DesignError("calibration= got an unfitted corrector; call .fit first")
    else:
        cal_pred, cal_truth = calibration_arrays(calibration, prediction, truth)
        corrector = fit_corrector(cal_pred, cal_truth, method, bandwidth=tweedie.bandwidth,
                                  derivative=tweedie.derivative, seed=seed) \
            if method == "tweedie" else fit_corrector(cal_pred, cal_truth, method)
    if isinstance(corrector, Tweedie) and tweedie.score_sample == "downstream":
        corrector = corrector.with_score_sample(yhat)
    return corrector


# ----------------------------------------------------------------------------- propensity
def propensity_scores(treat: np.ndarray, x: np.ndarray | None, *, learner: Any = None,
                      fold_ids: np.ndarray | None = None, clip: float = 0.01
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Cross-fitted propensities of a binary treatment, clipped to ``[clip, 1 - clip]``.

    Without features (``x`` None or no columns) the treated share (difference in means).

    Parameters
    ----------
    treat
        ``(n,)`` binary treatment.
    x
        ``(n, p)`` features, the rows of a chips source for an image learner
        (:class:`~geocausal.nuisance.crossfit.SourceRows`), or None.
    learner
        A classifier (default :func:`geocausal.vocabulary.default_propensity`).
    fold_ids
        ``(n,)`` fold ids of the cross-fitting.
    clip
        Clipping threshold; the number clipped is reported, and a counted
        :class:`~geocausal.errors.DiagnosticWarning` says so.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 1)); d = (x[:, 0] + rng.normal(size=200) > 0).astype(float)
    >>> e, diag = propensity_scores(d, x, fold_ids=np.arange(200) % 5)
    >>> bool(0.01 <= e.min() and e.max() <= 0.99), diag["propensity_clipped"] >= 0
    (True, True)
    """
    treat = np.asarray(treat, dtype=float)
    if x is None or (not isinstance(x, SourceRows) and x.shape[1] == 0):  # SourceRows: chips
        return np.full(treat.size, treat.mean()), {"propensity": "constant (difference in means)"}
    learner = default_propensity() if learner is None else learner
    if fold_ids is None:
        raise DesignError("propensity_scores needs fold_ids for cross-fitting")
    k = int(np.unique(fold_ids).size)
    e = crossfit_predict(learner, x, treat, fold_ids, method="predict_proba")
    e, clipped = clip_propensity(
        e, treat, clip, stacklevel=2, where="diagnostics['propensity_clipped']",
        remedy="check where treated and control units overlap and restrict the sample there")
    return e, {
        "propensity": f"cross-fitted {type(learner).__name__}, {k} folds",
        "propensity_clipped": clipped}


def resampling_clusters(req: Any, calibration: Any, interval: str
                        ) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
    """Cluster name, downstream labels and calibration labels for a bootstrap/delta interval.

    ``req`` is a parsed ``vcov=`` (:class:`~geocausal.inference.variance.VcovRequest`):
    hetero means no clusters (``"iid"`` is refused: no homoskedastic variance is defined);
    one cluster column clusters the downstream units, and the calibration units too when the
    calibration frame has that column (else they count as independent units).
    """
    if req.kind == "iid":
        raise DesignError(f"vcov='iid' is not defined for interval='{interval}': the bootstrap "
                          "and delta-method intervals resample or sum independent units "
                          "(heteroskedasticity-robust); use vcov='hetero' or a cluster column")
    if req.kind != "cluster":
        return None, None, None
    if len(req.clusters) != 1:
        raise DesignError(f"two-way clusters are not available with interval='{interval}': "
                          "use 'hetero' or one cluster column, {'cluster': 'village'}")
    col = req.names[0]
    cal_groups = None
    columns = getattr(calibration, "columns", ())
    if col in columns:
        cal_groups = calibration[col].to_numpy()
    return col, req.clusters[0], cal_groups


# ----------------------------------------------------------------------------- the effect
@dataclass(frozen=True)
class DebiasResult:
    """The corrected effect of :func:`debias_effect`.

    ``influence`` (with ``vcov`` and ``cluster_data`` for it) is set for the fixed and delta
    intervals; ``se`` and ``label`` for the bootstrap.
    """

    estimate: float
    diagnostics: dict[str, Any]
    influence: np.ndarray | None = field(default=None, repr=False)
    vcov: Any = None
    cluster_data: Any = field(default=None, repr=False)
    se: float | None = None
    label: str | None = None


def debias_effect(yhat: np.ndarray, treat: np.ndarray, e: np.ndarray,
                  corrector: LinearCalibration | Tweedie | None, *, interval: str = "bootstrap",
                  vcov: Any = "hetero", req: Any = None, cluster_data: Any = None,
                  calibration: Any = None, n_boot: int = 999, seed: int = 0,
                  alpha: float = 0.05) -> DebiasResult:
    """The Hajek IPW effect on corrected predictions, with an interval that carries the
    calibration uncertainty.

    Parameters
    ----------
    yhat, treat, e
        Downstream predictions, binary treatment and propensities (checked by
        :func:`check_arms`).
    corrector
        A fitted corrector, or None for the naive effect.
    interval
        ``"bootstrap"`` (joint over calibration and downstream), ``"delta"`` (LCC or naive)
        or ``"fixed"`` (the corrector treated as known).
    vcov, req, cluster_data
        The ``vcov=`` spec, its parsed request and the downstream cluster labels.
    calibration
        The calibration frame (its cluster column, when it has one, clusters the
        calibration units in the bootstrap and the delta method).
    n_boot, seed, alpha
        Bootstrap draws, seed and the level of the percentile interval in the diagnostics.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yc = rng.normal(size=400); lcc = LinearCalibration().fit(0.5 * yc, yc)
    >>> d = rng.integers(0, 2, 2000).astype(float); y = d + rng.normal(size=2000)
    >>> from geocausal.inference.variance import parse_vcov
    >>> r = debias_effect(0.5 * y, d, np.full(2000, 0.5), lcc, interval="delta",
    ...                   req=parse_vcov("hetero", 2000))
    >>> round(r.estimate, 6) == round(float(hajek_ate(y, d, np.full(2000, 0.5))), 6)
    True
    """
    from geocausal.designs.common import check_estimate

    treat, e = check_arms(treat, e)
    naive = float(hajek_ate(yhat, treat, e))
    naive_psi = hajek_influence(yhat, treat, e)
    diag: dict[str, Any] = {"interval": interval, "naive": naive,
                            "naive_se": float(np.sqrt(np.mean(naive_psi ** 2) / yhat.size))}
    if corrector is None:
        diag["interval"] = "fixed" if interval == "bootstrap" else interval
        return DebiasResult(naive, diag, naive_psi, vcov, cluster_data)
    corrected = corrector.transform(yhat)
    diag.update(corrector.diagnostics())
    diag["out_of_support"] = int(((yhat < corrector.support[0])
                                  | (yhat > corrector.support[1])).sum())
    if isinstance(corrector, Tweedie):
        diag["score_contrast"] = float(hajek_ate(corrector.score_fn(yhat), treat, e))
        tau = naive - corrector.sigma2 * diag["score_contrast"]  # tau(yhat) - s^2 tau(score)
    else:
        tau = float(hajek_ate(corrected, treat, e))
    name = corrector.name
    if interval == "fixed":
        psi = hajek_influence(corrected, treat, e)
        check_estimate(tau, psi, f"the {name} corrected effect")
        return DebiasResult(tau, diag, psi, vcov, cluster_data)
    col, groups, cal_groups = resampling_clusters(req, calibration, interval)
    if interval == "delta":
        if not isinstance(corrector, LinearCalibration):
            raise DesignError("the delta method is available for method='lcc'; the Tweedie KDE "
                              "score has no simple influence function, use interval='bootstrap'")
        tau_d, psi = lcc_delta_influence(corrector, yhat, treat, e)
        check_estimate(tau_d, psi, "the LCC corrected effect")
        if col is None or groups is None:
            return DebiasResult(tau_d, diag, psi, vcov, None)
        # stacked rows: downstream clusters, then calibration clusters
        cal = (np.arange(corrector.n_cal) if cal_groups is None else cal_groups).astype(str)
        stacked = {col: np.concatenate([np.char.add("d:", groups.astype(str)),
                                        np.char.add("c:", cal)])}
        return DebiasResult(tau_d, diag, psi, {"cluster": col}, stacked)
    draws = joint_bootstrap(corrector, yhat, treat, e, n_boot=n_boot, seed=seed,
                            groups=groups, cal_groups=cal_groups)
    se = float(np.std(draws, ddof=1))
    check_estimate(tau, None, f"the {name} corrected effect")
    check_estimate(se, None, f"the bootstrap standard error of the {name} corrected effect")
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    diag.update({"n_boot": int(n_boot),
                 f"boot_percentile_{100 * (1 - alpha):.0f}": (float(lo), float(hi)),
                 "boot_bias": float(draws.mean() - tau)})
    label = "calibration+downstream" if col is None else f"cluster({col}); calibration+downstream"
    return DebiasResult(tau, diag, se=se, label=f"bootstrap({label})")


# ----------------------------------------------------------------------------- pseudo-trials
@dataclass(frozen=True)
class PseudoTrials:
    """The pieces of a :class:`~geocausal.api.debias.DebiaserComparison`."""

    table: Any
    trials: Any
    recommended: str
    settings: dict = field(default_factory=dict)


def pseudo_treatments(y: np.ndarray, n_trials: int, tilt: float, rng: np.random.Generator
                      ) -> np.ndarray:
    """``(n, n_trials)`` draws ``A ~ Bern(sigmoid(g z(y)))``, ``g ~ U(-tilt, tilt)``.

    Examples
    --------
    >>> pseudo_treatments(np.arange(10.0), 3, 1.5, np.random.default_rng(0)).shape
    (10, 3)
    """
    z = (y - y.mean()) / y.std()
    gam = rng.uniform(-tilt, tilt, n_trials)
    p = 1 / (1 + np.exp(-gam[:, None] * z[None, :]))
    return (rng.random(p.shape) < p).T


def pseudo_trials(yhat: np.ndarray, y: np.ndarray, *, methods: tuple[str, ...] = (
        "naive", "lcc", "tweedie"), fold_ids: np.ndarray, n_trials: int = 20,
        pseudo: Any = None, tilt: float = 1.5, min_arm: int = 5, seed: int = 0,
        criterion: str = "mae", tweedie_options: dict | None = None) -> PseudoTrials:
    """K-fold pseudo-trials on calibration data (see ``gc.compare_debiasers``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=600); yhat = 0.5 * y + rng.normal(0, .3, 600)
    >>> res = pseudo_trials(yhat, y, fold_ids=np.arange(600) % 3, n_trials=5)
    >>> sorted(res.table.method)
    ['lcc', 'naive', 'tweedie']
    """
    import pandas as pd

    n = y.size
    rng = np.random.default_rng(seed)
    if pseudo is None:
        treat = pseudo_treatments(y, n_trials, tilt, rng)
        source = f"tilted on the truth, |g| <= {tilt}"
    else:
        pt = np.asarray(pseudo)
        if pt.shape[0] != n:
            raise DataError(f"pseudo_treatments has {pt.shape[0]} rows but the calibration set "
                            f"has {n} units")
        treat = (np.column_stack([pt == g for g in pd.unique(pt)]) if pt.ndim == 1
                 else pt.astype(bool))
        source = "given"
    rows = []
    for k in np.unique(fold_ids):
        te = fold_ids == k
        tr = ~te
        corrected = {"naive": yhat[te]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "lcc" in methods:
                corrected["lcc"] = LinearCalibration().fit(yhat[tr], y[tr]).transform(yhat[te])
            if "tweedie" in methods:
                corrected["tweedie"] = Tweedie(**(tweedie_options or {})).fit(
                    yhat[tr], y[tr]).transform(yhat[te])
        for t in range(treat.shape[1]):
            a = treat[te, t]
            if a.sum() < min_arm or (~a).sum() < min_arm:
                continue
            true = y[te][a].mean() - y[te][~a].mean()
            for m in methods:
                c = corrected[m]
                rows.append({"fold": int(k), "trial": t, "method": m, "true": true,
                             "estimate": c[a].mean() - c[~a].mean(), "n_treated": int(a.sum())})
    trials = pd.DataFrame(rows)
    if trials.empty:
        raise DesignError(f"no pseudo-trial has {min_arm} or more units in both arms; use "
                          "fewer folds or larger groups")
    summ = []
    for m in methods:
        t = trials[trials.method == m]
        slope, icpt = np.polyfit(t["true"], t["estimate"], 1) if t["true"].std() > 0 else (
            np.nan, np.nan)
        err = t["estimate"] - t["true"]
        summ.append({"method": m, "slope": float(slope), "intercept": float(icpt),
                     "mae": float(err.abs().mean()), "rmse": float(np.sqrt((err ** 2).mean())),
                     "n_trials": int(len(t))})
    table = pd.DataFrame(summ)
    table["slope_error"] = (table["slope"] - 1).abs()
    order = {"mae": ["mae", "rmse"], "rmse": ["rmse", "mae"], "slope": ["slope_error", "mae"]}
    best = table.sort_values(order[criterion]).iloc[0]["method"]
    return PseudoTrials(table=table, trials=trials, recommended=str(best),
                        settings={"folds": int(np.unique(fold_ids).size),
                                  "n_trials": int(treat.shape[1]), "pseudo_treatments": source,
                                  "seed": seed, "criterion": criterion})
