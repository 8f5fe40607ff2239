"""The one ``vcov=`` registry: hetero, cluster, two-way cluster (and iid where it exists).

Convention: an estimator theta_hat with influence function psi satisfies
``theta_hat - theta = mean(psi) + o_p(n^-1/2)``, with ``psi`` an ``(n, k)`` array.
The variance of theta_hat is then estimated by ``psi' psi / n^2`` (heteroskedasticity-robust,
no degrees-of-freedom correction, as DoubleML does), or by summing psi within clusters first.

Vocabulary (the same in every design):

``"hetero"`` (aliases ``"HC0"``, ``"robust"``)
    The influence-function (sandwich) variance, normal critical values.
``"iid"``
    A homoskedastic variance. It exists only where a design defines one (``gc.fe``: OLS
    ``s^2 (X'X)^-1``); an estimator known only through its influence function has no separate
    homoskedastic variance, so ``"iid"`` is refused there with a :class:`DesignError`.
``{"cluster": col}``, ``{"cluster": [col1, col2]}``
    One-way (``G / (G - 1)`` correction) or two-way (Cameron-Gelbach-Miller) cluster-robust
    variance. Tests and intervals use **t(G - 1)** critical values, ``G`` the number of clusters
    (two-way: ``min(G1, G2) - 1``), as statsmodels and fixest do; with fewer than
    :data:`MIN_CLUSTERS` clusters a :class:`~geocausal.errors.FewClustersWarning` gives the count.

How an :class:`~geocausal.results.estimate.Estimate` recomputes its variance for another
``vcov=`` (``with_vcov``) is a :class:`VarianceRule`: plain data, no callables, so that
``with_vcov(spec)`` runs the very function a refit with ``vcov=spec`` runs.

Examples
--------
>>> import numpy as np
>>> psi = np.array([[1.0], [-1.0], [2.0], [-2.0]])
>>> vcov_from_influence(psi, "hetero")
array([[0.625]])
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError, FewClustersWarning
from geocausal.vocabulary import FOREIGN_VCOV, VCOV_NAMES

VcovSpec = str | Mapping[str, Any]

#: Fewer clusters than this trigger a :class:`~geocausal.errors.FewClustersWarning`
#: (t(G - 1) critical values are used at any G; with under ~30 clusters, and fewer still when
#: they are unbalanced, cluster-robust tests over-reject even so: Cameron and Miller 2015).
MIN_CLUSTERS = 30

#: ``cluster_adjust`` values of :func:`vcov_from_influence`.
CLUSTER_ADJUST = ("G/(G-1)", "none", "group_debias")


@dataclass(frozen=True)
class VcovRequest:
    """A parsed ``vcov=`` argument: kind in {"iid", "hetero", "cluster"} and cluster labels."""

    kind: str
    clusters: tuple[np.ndarray, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Human-readable label, e.g. ``"cluster(country)"``."""
        if self.kind != "cluster":
            return self.kind
        return "cluster(" + " x ".join(self.names) + ")"

    @property
    def n_clusters(self) -> int | None:
        """The number of clusters (two-way: the smaller count); None without clusters."""
        if self.kind != "cluster":
            return None
        return min(int(np.unique(c).size) for c in self.clusters)

    @property
    def dof(self) -> int | None:
        """Degrees of freedom of the t critical values: ``G - 1`` for clusters, else None."""
        g = self.n_clusters
        return None if g is None else g - 1


def _as_labels(value: Any, name: str, n: int | None, cluster_data: Mapping[str, Any] | None):
    if isinstance(value, str):
        if cluster_data is None or value not in cluster_data:
            known = sorted(cluster_data) if cluster_data else []
            raise DataError(f"vcov cluster variable '{value}' is not a column of the data (known: {known})")
        arr, label = np.asarray(cluster_data[value]), value
    else:
        arr, label = np.asarray(value), name
    if arr.ndim != 1:
        raise DataError(f"cluster labels for '{label}' must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"cluster labels for '{label}' have length {arr.shape[0]}, expected {n}")
    if pd.isna(pd.Series(arr)).any():
        raise DataError(f"cluster variable '{label}' has {int(pd.isna(pd.Series(arr)).sum())} missing values")
    return arr, label


def parse_vcov(
    vcov: VcovSpec, n: int | None = None, cluster_data: Mapping[str, Any] | None = None
) -> VcovRequest:
    """Parse the ``vcov=`` keyword shared by every design.

    Parameters
    ----------
    vcov
        ``"iid"``, ``"hetero"`` (alias ``"HC0"``), ``{"cluster": "country"}``,
        ``{"cluster": ["unit", "period"]}`` (two-way) or ``{"cluster": array}``.
    n
        Expected number of observations, checked against cluster arrays.
    cluster_data
        Mapping from column names to arrays, used to resolve cluster names.

    Returns
    -------
    VcovRequest

    Examples
    --------
    >>> parse_vcov({"cluster": "g"}, cluster_data={"g": [1, 1, 2]}).label
    'cluster(g)'
    """
    if isinstance(vcov, str):
        key = vcov.lower()
        if key in ("iid", "hetero", "hc0", "robust"):
            return VcovRequest("iid" if key == "iid" else "hetero")
        if cluster_data is not None and vcov in cluster_data:
            arr, label = _as_labels(vcov, vcov, n, cluster_data)
            return VcovRequest("cluster", (arr,), (label,))
        if key in FOREIGN_VCOV:
            raise DataError(f"vcov={vcov!r}: {FOREIGN_VCOV[key]}")
        raise DataError(f"vcov '{vcov}' is not one of {', '.join(repr(k) for k in VCOV_NAMES)} "
                        "or {'cluster': column}")
    if isinstance(vcov, Mapping):
        if len(vcov) == 1 and str(next(iter(vcov))).upper() == "CRV1":
            vcov = {"cluster": next(iter(vcov.values()))}
        elif len(vcov) == 1 and str(next(iter(vcov))).lower() in set(FOREIGN_VCOV) - {"cluster"}:
            raise DataError(f"vcov={dict(vcov)!r}: {FOREIGN_VCOV[str(next(iter(vcov))).lower()]}")
        if set(vcov) != {"cluster"}:
            raise DataError(f"vcov dict must have the single key 'cluster', got {sorted(vcov)}")
        spec = vcov["cluster"]
        items = list(spec) if isinstance(spec, list | tuple) else [spec]
        if not 1 <= len(items) <= 2:
            raise DataError("vcov {'cluster': ...} takes one or two cluster variables")
        parsed = [_as_labels(v, f"cluster{j + 1}", n, cluster_data) for j, v in enumerate(items)]
        return VcovRequest("cluster", tuple(p[0] for p in parsed), tuple(p[1] for p in parsed))
    raise DataError(f"vcov must be a string or a dict, got {type(vcov).__name__}")


def cluster_data_from(data: pd.DataFrame | None, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every column of ``data`` as a label array (optionally only ``rows``), for named clusters.

    Examples
    --------
    >>> sorted(cluster_data_from(pd.DataFrame({"g": [1, 2], "h": [3, 4]})))
    ['g', 'h']
    """
    if data is None:
        return {}
    return {str(c): (data[c].to_numpy() if rows is None else data[c].to_numpy()[rows])
            for c in data.columns}


def cluster_sums(influence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sum the rows of ``influence`` (or of any scores) within each cluster: a ``(G, k)``
    array, clusters in sorted order of their labels. The one cluster sum of the package (the
    influence-function variances and the rdd multiplier bootstrap).
    """
    _, inv = np.unique(labels, return_inverse=True)
    out = np.zeros((inv.max() + 1, influence.shape[1]))
    np.add.at(out, inv, influence)
    return out


def cluster_factor(g: int) -> float:
    """The small-cluster factor ``G / (G - 1)`` of a one-way cluster variance (1 for one
    cluster, which no variance can use).

    Examples
    --------
    >>> cluster_factor(5)
    1.25
    """
    return g / (g - 1) if g > 1 else 1.0


def _one_way(psi: np.ndarray, labels: np.ndarray, adjust: str = "G/(G-1)") -> np.ndarray:
    n = psi.shape[0]
    sums = cluster_sums(psi, labels)
    g = sums.shape[0]
    if g < 2:
        raise DataError("cluster-robust variance needs at least 2 clusters, got 1")
    factor = {"G/(G-1)": cluster_factor(g), "none": 1.0,
              "group_debias": cluster_factor(g) * (n - 1) / n}[adjust]
    return factor * sums.T @ sums / n**2


def check_clusters(req: VcovRequest, stacklevel: int = 3) -> int | None:
    """Degrees of freedom for a request (``G - 1`` with clusters) and a warning when few.

    Emits :class:`~geocausal.errors.FewClustersWarning` when there are fewer than
    :data:`MIN_CLUSTERS` clusters.

    Examples
    --------
    >>> import warnings
    >>> req = parse_vcov({"cluster": "g"}, cluster_data={"g": [1, 1, 2, 2, 3]})
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     dof = check_clusters(req)
    >>> dof, w[0].category.__name__
    (2, 'FewClustersWarning')
    """
    g = req.n_clusters
    if g is not None and g < MIN_CLUSTERS:
        warnings.warn(
            f"vcov {req.label} has only {g} clusters (fewer than {MIN_CLUSTERS}): p-values and "
            f"intervals use t({g - 1}) critical values, but cluster-robust inference with few "
            "clusters can still over-reject; report it with care (e.g. compare with a wild "
            "cluster bootstrap or a coarser design)", FewClustersWarning, stacklevel=stacklevel)
    return req.dof


def _nearest_psd(v: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh((v + v.T) / 2)
    if w.min() >= 0:
        return v
    return (q * np.clip(w, 0, None)) @ q.T


def vcov_from_influence(
    influence: np.ndarray,
    vcov: VcovSpec | VcovRequest = "hetero",
    cluster_data: Mapping[str, Any] | None = None,
    *,
    cluster_adjust: str = "G/(G-1)",
    scale: float = 1.0,
    psd: bool = True,
) -> np.ndarray:
    """Variance-covariance matrix of an estimator from its influence function.

    Parameters
    ----------
    influence
        ``(n,)`` or ``(n, k)`` array, ``theta_hat - theta ~ mean(influence)``.
    vcov
        See :func:`parse_vcov`. ``"iid"`` is refused (:class:`DesignError`): an influence
        function defines no homoskedastic variance. Two-way clustering is
        Cameron-Gelbach-Miller ``V_a + V_b - V_ab``.
    cluster_data
        Mapping from names to label arrays, for named clusters.
    cluster_adjust
        Small-sample factor of each cluster sum: ``"G/(G-1)"`` (default), ``"none"``
        (linearmodels' ``PanelOLS`` default) or ``"group_debias"``
        (``G/(G-1) * (n-1)/n``).
    scale
        A factor on the whole matrix (``gc.fe``: ``n / (n - k - d)``).
    psd
        Project a two-way matrix onto the positive semi-definite cone when needed.

    Returns
    -------
    numpy.ndarray
        ``(k, k)`` matrix.

    Examples
    --------
    >>> import numpy as np
    >>> psi = np.arange(6.0).reshape(-1, 1) - 2.5
    >>> float(vcov_from_influence(psi, {"cluster": np.array([0, 0, 1, 1, 2, 2])})[0, 0]) > 0
    True
    """
    psi = np.asarray(influence, dtype=float)
    if psi.ndim == 1:
        psi = psi[:, None]
    n = psi.shape[0]
    req = vcov if isinstance(vcov, VcovRequest) else parse_vcov(vcov, n, cluster_data)
    if not np.all(np.isfinite(psi)):
        raise DataError("influence function has non-finite values; check for NaN inputs")
    if cluster_adjust not in CLUSTER_ADJUST:
        raise DataError(f"cluster_adjust '{cluster_adjust}' is not one of {CLUSTER_ADJUST}")
    if req.kind == "iid":
        raise DesignError(
            "vcov='iid' (homoskedastic) is not defined for an estimator known through its "
            "influence function: its variance is already the sandwich. Use vcov='hetero' or "
            "{'cluster': column}; gc.fe (OLS) accepts 'iid'")
    if req.kind == "hetero":
        return scale * (psi.T @ psi) / n**2
    if len(req.clusters) == 1:
        return scale * _one_way(psi, req.clusters[0], cluster_adjust)
    a, b = req.clusters
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    inter = ia.astype(np.int64) * (ib.max() + 1) + ib
    v = scale * (_one_way(psi, a, cluster_adjust) + _one_way(psi, b, cluster_adjust)
                 - _one_way(psi, inter, cluster_adjust))
    return _nearest_psd(v) if psd else (v + v.T) / 2


def median_vcov(thetas: np.ndarray, influences: np.ndarray, req: VcovRequest,
                z: float = 1.96) -> np.ndarray:
    """Variance of the median over repeated cross-fitting (DoubleML's rule).

    ``se = (median_r(theta_r + z se_r) - median_r(theta_r)) / z``, with ``se_r`` from each
    repetition's influence function; the correlations are those of the mean influence function.
    One repetition gives its influence-function variance.

    Parameters
    ----------
    thetas
        ``(R, k)`` estimates per repetition.
    influences
        ``(R, n, k)`` influence functions per repetition.
    req
        The variance request applied to each repetition.
    z
        The critical value of the aggregation rule (DoubleML: 1.96).

    Examples
    --------
    >>> import numpy as np
    >>> psi = np.random.default_rng(0).normal(size=(3, 100, 1))
    >>> v = median_vcov(np.array([[1.0], [1.1], [0.9]]), psi, parse_vcov("hetero"))
    >>> v.shape
    (1, 1)
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
    infl = np.asarray(influences, dtype=float)
    if infl.ndim == 2:
        infl = infl[..., None]
    if infl.shape[0] == 1:
        return vcov_from_influence(infl[0], req)
    ses = np.array([np.sqrt(np.diag(vcov_from_influence(f, req))) for f in infl])
    theta = np.median(thetas, axis=0)
    se = (np.median(thetas + z * ses, axis=0) - theta) / z
    base = vcov_from_influence(infl.mean(axis=0), req)
    sd = np.sqrt(np.clip(np.diag(base), 1e-300, None))
    return (base / np.outer(sd, sd)) * np.outer(se, se)


@dataclass(frozen=True)
class VarianceRule:
    """How an estimate's variance is (re)computed for a ``vcov=`` spec: plain, picklable data.

    A design builds its own variance with :func:`variance_from_rule` and stores the rule on the
    :class:`~geocausal.results.estimate.Estimate`; ``Estimate.with_vcov(spec)`` runs the same
    function on the same inputs, so it equals a refit with ``vcov=spec`` or refuses.

    Attributes
    ----------
    method : str
        ``"influence"`` (the variance of the stored influence function) or ``"median"``
        (:func:`median_vcov` over ``rep_thetas`` and ``rep_influence``).
    scale, cluster_adjust, psd
        Passed to :func:`vcov_from_influence` (``gc.fe``: ``n / (n - k - d)``, ``"none"``).
    named : tuple of (spec, label, matrix)
        Variances a design computed otherwise and can only return as they are: a string spec
        (lower case), its label and the ``(k, k)`` matrix (``gc.fe``'s ``"iid"``,
        ``gc.placement``'s ``"delong"``).
    base_dof : int or None
        t degrees of freedom without clusters (``gc.fe``: residual dof); clusters use ``G - 1``.
    rep_thetas, rep_influence : numpy.ndarray or None
        ``(R, k)`` and ``(R, n, k)`` per-repetition estimates and influence functions
        (``method="median"``).
    vcov_dependent : tuple of str
        Diagnostics computed with the variance (joint bands, coverage ratios); ``with_vcov``
        drops them rather than keep stale numbers.
    refuse : str or None
        When set, ``with_vcov`` raises :class:`DesignError` with this reason (the variance is
        not a function of the influence function alone, e.g. bootstrap curve bands).
    covers_curve : bool
        Whether the rule also recomputes ``Estimate.curve`` bands; without it an estimate with
        a curve refuses ``with_vcov``.
    """

    method: str = "influence"
    scale: float = 1.0
    cluster_adjust: str = "G/(G-1)"
    psd: bool = True
    named: tuple[tuple[str, str, np.ndarray], ...] = ()
    base_dof: int | None = None
    rep_thetas: np.ndarray | None = field(default=None, repr=False)
    rep_influence: np.ndarray | None = field(default=None, repr=False)
    vcov_dependent: tuple[str, ...] = ()
    refuse: str | None = None
    covers_curve: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("influence", "median"):
            raise DataError(f"VarianceRule method '{self.method}' is not 'influence' or 'median'")
        if self.cluster_adjust not in CLUSTER_ADJUST:
            raise DataError(f"cluster_adjust '{self.cluster_adjust}' is not one of "
                            f"{CLUSTER_ADJUST}")
        if self.method == "median" and (self.rep_thetas is None or self.rep_influence is None):
            raise DataError("VarianceRule(method='median') needs rep_thetas and rep_influence")


@dataclass(frozen=True)
class VarianceResult:
    """A variance matrix, its label, the t degrees of freedom and the parsed request."""

    matrix: np.ndarray
    label: str
    dof: int | None
    request: VcovRequest | None


def variance_from_rule(
    rule: VarianceRule,
    influence: np.ndarray | None,
    vcov: VcovSpec | VcovRequest,
    cluster_data: Mapping[str, Any] | None = None,
    *,
    warn: bool = True,
    stacklevel: int = 4,
) -> VarianceResult:
    """The variance a design reports for ``vcov``, following ``rule``.

    Designs call it at fit time and ``Estimate.with_vcov`` calls it later, so both agree.
    With clusters the t degrees of freedom are ``G - 1`` (two-way: ``min(G1, G2) - 1``) and
    fewer than :data:`MIN_CLUSTERS` clusters warn (:func:`check_clusters`).

    Examples
    --------
    >>> import numpy as np
    >>> psi = np.array([[1.0], [-1.0], [2.0], [-2.0]])
    >>> r = variance_from_rule(VarianceRule(), psi, "hetero")
    >>> r.label, r.matrix.tolist(), r.dof
    ('hetero', [[0.625]], None)
    """
    if rule.refuse:
        raise DesignError(rule.refuse)
    if isinstance(vcov, str):
        for spec, label, matrix in rule.named:
            if vcov.lower() == spec:
                return VarianceResult(np.asarray(matrix, dtype=float), label, rule.base_dof, None)
    n = (rule.rep_influence.shape[1] if rule.method == "median"
         else None if influence is None else np.asarray(influence).shape[0])
    if n is None:
        raise DesignError("this estimate has no influence functions; refit with the vcov "
                          "you need")
    req = vcov if isinstance(vcov, VcovRequest) else parse_vcov(vcov, n, cluster_data)
    if rule.method == "median":
        v = median_vcov(rule.rep_thetas, rule.rep_influence, req)
    else:
        v = vcov_from_influence(influence, req, cluster_adjust=rule.cluster_adjust,
                                scale=rule.scale, psd=rule.psd)
    dof = check_clusters(req, stacklevel=stacklevel) if warn else req.dof
    return VarianceResult(v, req.label, rule.base_dof if dof is None else dof, req)
