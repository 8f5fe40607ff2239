"""Variance from influence functions: iid, hetero, cluster and two-way cluster.

Convention: an estimator theta_hat with influence function psi satisfies
``theta_hat - theta = mean(psi) + o_p(n^-1/2)``, with ``psi`` an ``(n, k)`` array.
The variance of theta_hat is then estimated by ``psi' psi / n^2`` (heteroskedasticity-robust,
no degrees-of-freedom correction, as DoubleML does), or by summing psi within clusters first.

Examples
--------
>>> import numpy as np
>>> psi = np.array([[1.0], [-1.0], [2.0], [-2.0]])
>>> vcov_from_influence(psi, "hetero")
array([[0.625]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError

VcovSpec = str | Mapping[str, Any]


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
        raise DataError(f"vcov '{vcov}' is not one of 'iid', 'hetero' or {{'cluster': column}}")
    if isinstance(vcov, Mapping):
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
    """Sum the rows of ``influence`` within each cluster: a ``(G, k)`` array."""
    _, inv = np.unique(labels, return_inverse=True)
    out = np.zeros((inv.max() + 1, influence.shape[1]))
    np.add.at(out, inv, influence)
    return out


def _one_way(psi: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = psi.shape[0]
    sums = cluster_sums(psi, labels)
    g = sums.shape[0]
    if g < 2:
        raise DataError("cluster-robust variance needs at least 2 clusters, got 1")
    return (g / (g - 1)) * sums.T @ sums / n**2


def _nearest_psd(v: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh((v + v.T) / 2)
    if w.min() >= 0:
        return v
    return (q * np.clip(w, 0, None)) @ q.T


def vcov_from_influence(
    influence: np.ndarray,
    vcov: VcovSpec | VcovRequest = "hetero",
    cluster_data: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Variance-covariance matrix of an estimator from its influence function.

    Parameters
    ----------
    influence
        ``(n,)`` or ``(n, k)`` array, ``theta_hat - theta ~ mean(influence)``.
    vcov
        See :func:`parse_vcov`. Cluster variances use the ``G / (G - 1)`` correction;
        two-way clustering is Cameron-Gelbach-Miller ``V_a + V_b - V_ab``, projected onto
        the positive semi-definite cone when needed.
    cluster_data
        Mapping from names to label arrays, for named clusters.

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
    if req.kind in ("iid", "hetero"):
        return psi.T @ psi / n**2
    if len(req.clusters) == 1:
        return _one_way(psi, req.clusters[0])
    a, b = req.clusters
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    inter = ia.astype(np.int64) * (ib.max() + 1) + ib
    v = _one_way(psi, a) + _one_way(psi, b) - _one_way(psi, inter)
    return _nearest_psd(v)
