"""The one result object every design returns: :class:`Estimate`, and :class:`EstimateSet`.

Examples
--------
>>> import numpy as np, pandas as pd
>>> psi = np.random.default_rng(0).normal(size=(200, 1))
>>> est = Estimate.from_influence(
...     params=pd.Series({"treat": 1.5}), influence=psi, estimand="ATE", design="aipw")
>>> list(est.tidy().columns)[:3]
['term', 'estimate', 'std_error']
>>> round(float(est.std_errors["treat"]), 3) == round(float(psi.std() / np.sqrt(200)), 3)
True
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import html
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError
from geocausal.inference.multitest import adjust_pvalues
from geocausal.inference.variance import VarianceRule, VcovSpec, variance_from_rule
from geocausal.results.readonly import ReadOnlyError, readonly_frame, readonly_series

_TRACKED = ("numpy", "scipy", "pandas", "scikit-learn", "statsmodels", "jax", "flax", "optax",
            "rasterio", "geopandas", "formulaic")


@functools.cache
def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def make_provenance(
    formula: str | None = None,
    seed: int | None = None,
    manifest_hash: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Provenance record: formula, seed, manifest hash, package and dependency versions, time.

    Examples
    --------
    >>> p = make_provenance("y ~ d", seed=3)
    >>> p["seed"], p["formula"]
    (3, 'y ~ d')
    """
    versions = {k: _version(k) for k in ("geocausal", *_TRACKED)}
    return {
        "formula": formula,
        "seed": seed,
        "manifest_hash": manifest_hash,
        "versions": versions,
        "python": platform.python_version(),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


class FrozenMapping(Mapping):
    """A read-only mapping that pickles (a ``MappingProxyType`` does not).

    Examples
    --------
    >>> import pickle
    >>> m = FrozenMapping({"a": 1})
    >>> pickle.loads(pickle.dumps(m)) == m, isinstance(m, Mapping)
    (True, True)
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMapping is read-only")

    def __setitem__(self, key: str, value: Any) -> None:
        raise ReadOnlyError(f"this mapping is read-only (a field of a frozen geocausal "
                            f"result); cannot set {key!r}: take a writable copy with dict(...)")

    def __delitem__(self, key: str) -> None:
        raise ReadOnlyError(f"this mapping is read-only (a field of a frozen geocausal "
                            f"result); cannot delete {key!r}: take a writable copy with "
                            "dict(...)")

    def __reduce__(self):
        return (FrozenMapping, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


def _freeze(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return FrozenMapping(dict(m or {}))


def _count_clusters(vcov_type: str, cluster_data: Mapping[str, Any]) -> int | None:
    """Clusters behind a ``"cluster(a)"`` / ``"cluster(a x b)"`` label (two-way: the fewer)."""
    m = re.fullmatch(r"cluster\((.+)\)", str(vcov_type))
    if not m:
        return None
    names = m.group(1).split(" x ")
    if not all(n in cluster_data for n in names):
        return None
    return min(int(pd.unique(pd.Series(np.asarray(cluster_data[n]))).size) for n in names)


@dataclass(frozen=True)
class Estimate:
    """A frozen estimate with its variance, influence functions, diagnostics and provenance.

    Attributes
    ----------
    params : pandas.Series
        Point estimates, indexed by term.
    vcov : pandas.DataFrame
        Variance-covariance matrix of ``params``.
    vcov_type : str
        Label of the variance, e.g. ``"hetero"`` or ``"cluster(country)"``.
    estimand : str
        ``"ATE"``, ``"ATT"``, ``"CATE-BLP"``, ``"QTE"``, ...
    design : str
        The design that produced it (``"aipw"``, ``"rdd"``, ...).
    nobs : int
        Number of observations used.
    influence : numpy.ndarray or None
        ``(n, k)`` influence functions, so that ``params - theta ~ mean(influence)``.
    curve : pandas.DataFrame or None
        The main function-valued estimand (rdd's quantile-effect curve): a grid column,
        ``estimate``, pointwise and uniform bands.
    diagnostics : Mapping
        Overlap, trimming, balance, bandwidths, AUCs, ... (read-only mapping of JSON-like
        values: numbers, strings, arrays, pandas objects, mappings, geocausal result classes).
    provenance : Mapping
        Formula, seeds, manifest hash, versions, timestamp.
    dof : int or None
        Degrees of freedom of the tests and intervals; when set they use the t distribution
        (cluster-robust variances: ``G - 1``, two-way ``min(G1, G2) - 1``; OLS: residual dof).
    cluster_data : Mapping
        Named label arrays that ``with_vcov`` may cluster on.
    null : pandas.Series
        The value each parameter is tested against (default 0; ``0.5`` for AUCs). ``tstat``,
        ``pvalues``, the stars of ``etable`` and ``summary`` all use it; ``summary`` shows it
        when any is not zero.
    variance_rule : VarianceRule or None
        How the variance is recomputed for another ``vcov=``; None means it cannot be.
    n_clusters : int or None
        The number of clusters of a cluster-robust variance (two-way: the smaller count);
        None otherwise. Counted from ``cluster_data`` when the clusters are named there.
    tables : Mapping[str, pandas.DataFrame]
        Small typed tables of function-valued or grouped estimands (``"gates"``, ``"toc"``,
        ``"joint_band"``, ``"qte"``, ...): one row per grid point or group; key column(s)
        first, then ``estimate``, ``std_error``, ``ci_low``, ``ci_high`` (and ``ucb_low``,
        ``ucb_high`` for uniform bands) where they exist. :meth:`table` returns a copy.
    fitted : Any
        An explicit handle to fitted models (the CATE model, nuisance learners); not compared,
        not shown, not in :meth:`to_dict`, and not saved by :meth:`save` (a ``NotSaved``
        marker stands in its place).

    Notes
    -----
    **Read-only.** ``params``, ``null``, ``vcov``, ``curve`` and every table are
    :class:`~geocausal.results.readonly.ReadOnlySeries` /
    :class:`~geocausal.results.readonly.ReadOnlyFrame` holding private non-writable copies, and
    ``influence`` is a non-writable array: an assignment such as ``est.params["d"] = 99``
    raises :class:`~geocausal.results.readonly.ReadOnlyError` (a ``DataError`` and a
    ``TypeError``; take ``.copy()`` to work on the numbers), so
    nothing can change what ``tidy()``, ``summary()`` or ``conf_int()`` report. Pickling,
    :func:`geocausal.load` and ``with_vcov`` keep them read-only.

    **Recomputing the variance.** ``with_vcov(spec)`` returns what a refit with ``vcov=spec``
    would return, or raises :class:`~geocausal.errors.DesignError`. It runs
    :func:`~geocausal.inference.variance.variance_from_rule` with the stored
    :class:`~geocausal.inference.variance.VarianceRule`, the function the design itself ran:
    influence-function designs (``from_influence``) store the default rule; ``gc.fe`` stores its
    degrees-of-freedom scale and its ``"iid"`` matrix; ``gc.dml_panel`` its per-repetition
    influence functions for the median rule; ``gc.placement`` its DeLong matrix. It refuses
    when there is no rule (variances from a bootstrap or a peer package), when the rule sets
    ``refuse`` (a design whose variance is not influence-only says why), or when the estimate
    has a ``curve`` whose bands the rule does not recompute (``covers_curve``). Diagnostics
    that were computed with the old variance (``rule.vcov_dependent``) are dropped and listed
    in ``diagnostics["dropped_by_with_vcov"]``.
    """

    params: pd.Series
    vcov: pd.DataFrame
    vcov_type: str = "hetero"
    estimand: str = "ATE"
    design: str = ""
    nobs: int = 0
    influence: np.ndarray | None = None
    curve: pd.DataFrame | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    dof: int | None = None
    cluster_data: Mapping[str, Any] = field(default_factory=dict, repr=False)
    null: pd.Series | Mapping[str, float] | float | None = None
    variance_rule: VarianceRule | None = field(default=None, repr=False)
    n_clusters: int | None = None
    sensitivity_elements: Any = field(default=None, repr=False, compare=False)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    fitted: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        params = pd.Series(self.params, dtype=float)
        object.__setattr__(self, "null", _null_series(self.null, params.index))
        if self.variance_rule is not None and not isinstance(self.variance_rule, VarianceRule):
            raise DataError(f"variance_rule must be a VarianceRule, got "
                            f"{type(self.variance_rule).__name__}")
        raw = self.vcov
        if isinstance(raw, pd.DataFrame) and set(raw.index) == set(params.index):
            raw = raw.loc[params.index, params.index]
        vals = np.atleast_2d(np.asarray(raw, dtype=float))
        if vals.shape != (len(params), len(params)):
            raise DataError(f"vcov has shape {vals.shape}, expected {(len(params), len(params))}")
        vcov = pd.DataFrame(vals, index=params.index, columns=params.index)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "vcov", vcov)
        if self.curve is not None and not isinstance(self.curve, pd.DataFrame):
            raise DataError(f"curve must be a pandas DataFrame or None, got "
                            f"{type(self.curve).__name__}")
        object.__setattr__(self, "tables", _check_tables(self.tables))
        _check_diagnostics(self.diagnostics)
        object.__setattr__(self, "diagnostics", _freeze(self.diagnostics))
        object.__setattr__(self, "provenance", _freeze(self.provenance))
        object.__setattr__(self, "cluster_data", _freeze(self.cluster_data))
        g = None
        if str(self.vcov_type).startswith("cluster"):
            g = _count_clusters(self.vcov_type, self.cluster_data) or self.n_clusters
        if g is not None and (isinstance(g, bool) or int(g) != g or int(g) < 1):
            raise DataError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        object.__setattr__(self, "n_clusters", None if g is None else int(g))
        if self.influence is not None:
            inf = np.asarray(self.influence, dtype=float)
            if inf.ndim == 1:
                inf = inf[:, None]
            if inf.shape[1] != len(params):
                raise DataError(
                    f"influence has {inf.shape[1]} columns but there are {len(params)} params"
                )
            object.__setattr__(self, "influence", inf)
        self._make_readonly()

    @property
    def _null_values(self) -> pd.Series:
        """``null`` as the read-only Series that ``__post_init__`` made of any accepted input."""
        null = self.null
        if not isinstance(null, pd.Series):  # pragma: no cover - __post_init__ guarantees it
            raise DataError(f"Estimate.null should be a Series after construction, got "
                            f"{type(null).__name__}")
        return null

    def _make_readonly(self) -> None:
        """Replace params, null, vcov, curve, tables and influence by read-only copies."""
        params = readonly_series(self.params, dtype=float)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "null", readonly_series(self.null, index=params.index,
                                                         dtype=float))
        object.__setattr__(self, "vcov", readonly_frame(self.vcov))
        if self.curve is not None:
            object.__setattr__(self, "curve", readonly_frame(self.curve))
        object.__setattr__(self, "tables", FrozenMapping(
            {k: readonly_frame(v) for k, v in dict(self.tables or {}).items()}))
        if self.influence is not None:
            inf = np.array(self.influence, dtype=float)
            inf.setflags(write=False)
            object.__setattr__(self, "influence", inf)

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        """Unpickle, then make the numbers read-only again (pickle drops the flags)."""
        for k, v in dict(state).items():
            object.__setattr__(self, k, v)
        for f in dataclasses.fields(self):  # results pickled before a field existed
            if f.name not in state:
                object.__setattr__(self, f.name, f.default_factory() if f.default_factory
                                   is not dataclasses.MISSING else f.default)
        self._make_readonly()

    def table(self, name: str) -> pd.DataFrame:
        """A writable copy of the table ``name`` of :attr:`tables`.

        Examples
        --------
        >>> import pandas as pd
        >>> g = pd.DataFrame({"group": [1, 2], "estimate": [0.5, 1.5], "std_error": [0.1, 0.2]})
        >>> est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]), tables={"gates": g})
        >>> est.table("gates")["estimate"].tolist()
        [0.5, 1.5]
        >>> est.table("toc")
        Traceback (most recent call last):
        ...
        geocausal.errors.DataError: this estimate has no table 'toc'; its tables are ['gates']
        """
        if name not in self.tables:
            raise DataError(f"this estimate has no table {name!r}; its tables are "
                            f"{sorted(self.tables)}")
        return pd.DataFrame(self.tables[name]).copy(deep=True)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_influence(
        cls,
        params: pd.Series | Mapping[str, float],
        influence: np.ndarray,
        vcov: VcovSpec = "hetero",
        variance_rule: VarianceRule | None = None,
        **kwargs: Any,
    ) -> Estimate:
        """Build an Estimate whose variance comes from its influence functions.

        ``variance_rule`` defaults to the plain influence-function rule; the variance, its label
        and the t degrees of freedom (``G - 1`` with clusters; a warning below
        :data:`~geocausal.inference.variance.MIN_CLUSTERS`) come from
        :func:`~geocausal.inference.variance.variance_from_rule`, as in ``with_vcov``.
        ``kwargs`` are the other fields (estimand, design, diagnostics, cluster_data, ...).
        ``nobs`` defaults to the number of influence rows.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> psi = np.array([[1.0], [-1.0], [2.0], [-2.0]])
        >>> est = Estimate.from_influence({"d": 0.3}, psi)
        >>> est.vcov_type, round(float(est.std_errors["d"]), 4)
        ('hetero', 0.7906)
        """
        params = pd.Series(params, dtype=float)
        psi = np.asarray(influence, dtype=float)
        psi = psi[:, None] if psi.ndim == 1 else psi
        rule = variance_rule or VarianceRule()
        res = variance_from_rule(rule, psi, vcov, kwargs.get("cluster_data"))
        kwargs.setdefault("nobs", psi.shape[0])
        kwargs["dof"] = res.dof
        kwargs.setdefault("n_clusters", None if res.request is None else res.request.n_clusters)
        return cls(params=params, vcov=pd.DataFrame(res.matrix), vcov_type=res.label,
                   influence=psi, variance_rule=rule, **kwargs)

    # ------------------------------------------------------------------ inference
    @property
    def std_errors(self) -> pd.Series:
        """Standard errors, the square roots of the diagonal of ``vcov``."""
        return pd.Series(np.sqrt(np.clip(np.diag(self.vcov.to_numpy()), 0, None)),
                         index=self.params.index)

    def _dist(self):
        from scipy import stats  # imported here: keeps `import geocausal` light for workers

        return stats.t(self.dof) if self.dof else stats.norm()

    @property
    def tstat(self) -> pd.Series:
        """Estimates minus their null values (``null``, default 0), over standard errors."""
        return (self.params - self.null) / self.std_errors

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the null that each parameter equals its ``null`` value."""
        return pd.Series(2 * self._dist().sf(np.abs(self.tstat.to_numpy())), index=self.params.index)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Pointwise confidence intervals with columns ``conf_low`` and ``conf_high``."""
        crit = self._dist().ppf(1 - alpha / 2)
        se = self.std_errors
        return pd.DataFrame({"conf_low": self.params - crit * se,
                             "conf_high": self.params + crit * se})

    def tidy(self, alpha: float = 0.05) -> pd.DataFrame:
        """A broom-style table: term, estimate, std_error, statistic, p_value, conf_low, conf_high."""
        ci = self.conf_int(alpha)
        return pd.DataFrame({
            "term": self.params.index.astype(str),
            "estimate": self.params.to_numpy(),
            "std_error": self.std_errors.to_numpy(),
            "statistic": self.tstat.to_numpy(),
            "p_value": self.pvalues.to_numpy(),
            "conf_low": ci["conf_low"].to_numpy(),
            "conf_high": ci["conf_high"].to_numpy(),
        })

    def with_vcov(self, vcov: VcovSpec, cluster_data: Mapping[str, Any] | None = None) -> Estimate:
        """A new Estimate equal to a refit with ``vcov=vcov``, or a :class:`DesignError`.

        Parameters
        ----------
        vcov
            ``"hetero"``, ``{"cluster": name or array}``, two names for two-way, or a name the
            design defines (``"iid"`` for ``gc.fe``, ``"delong"`` for ``gc.placement``).
        cluster_data
            Extra named label arrays; names stored with the estimate are also available.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(40), 5)
        >>> est = Estimate.from_influence({"d": 1.0}, rng.normal(size=200), cluster_data={"g": g})
        >>> est.with_vcov({"cluster": "g"}).dof
        39
        """
        rule = self.variance_rule
        what = self.design or "estimate"
        if rule is None:
            raise DesignError(f"the variance of this {what} ({self.vcov_type}) cannot be "
                              "recomputed from stored influence functions; refit with the vcov "
                              "you need")
        if self.curve is not None and not rule.covers_curve:
            raise DesignError(f"this {what} has curve bands that with_vcov cannot recompute; "
                              "refit with the vcov you need")
        data = {**self.cluster_data, **(cluster_data or {})}
        res = variance_from_rule(rule, self.influence, vcov, data)
        diags = dict(self.diagnostics)
        dropped = [k for k in rule.vcov_dependent if k in diags]
        for k in dropped:
            del diags[k]
        dropped += [f"tables[{k!r}]" for k in self.tables]  # their bands used the old vcov
        if dropped:
            diags["dropped_by_with_vcov"] = (f"{', '.join(dropped)} (computed with vcov "
                                             f"{self.vcov_type}; refit to recompute them)")
        return replace(self, vcov=pd.DataFrame(res.matrix, index=self.params.index,
                                               columns=self.params.index),
                       vcov_type=res.label, dof=res.dof, diagnostics=diags, tables={},
                       n_clusters=None if res.request is None else res.request.n_clusters,
                       sensitivity_elements=_sensitivity_with_vcov(self.sensitivity_elements,
                                                                   res.request))

    # ------------------------------------------------------------------ presentation
    def summary(self, alpha: float = 0.05) -> Summary:
        """A printable summary (text in a terminal, HTML in a notebook)."""
        return Summary(self, alpha)

    def __repr__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: tidy rows, vcov, diagnostics, provenance, curve, tables.

        Tables are lists of records. ``fitted`` is left out (diagnostics hold only data: the
        constructor refuses a fitted model there); a provenance value that is not data is
        left out too, never turned into a string, and listed under ``"not_serialised"``
        (absent when none).
        """
        left_out: list[str] = []
        diagnostics = _jsonable(dict(self.diagnostics), "diagnostics", left_out)
        provenance = _jsonable(dict(self.provenance), "provenance", left_out)
        out = {
            "design": self.design,
            "estimand": self.estimand,
            "nobs": int(self.nobs),
            "vcov_type": self.vcov_type,
            "coefficients": self.tidy().to_dict(orient="records"),
            "vcov": self.vcov.to_numpy().tolist(),
            "dof": None if self.dof is None else int(self.dof),
            "n_clusters": self.n_clusters,
            "null": {str(k): float(v) for k, v in self._null_values.items()},
            "diagnostics": diagnostics,
            "provenance": provenance,
            "curve": None if self.curve is None else _jsonable(
                self.curve.to_dict(orient="list"), "curve", left_out),
            "tables": {str(k): _jsonable(v.to_dict(orient="records"), f"tables[{k!r}]",
                                         left_out) for k, v in self.tables.items()},
        }
        if left_out:
            out["not_serialised"] = left_out
        return out

    def sensitivity(self, cf_y: float = 0.03, cf_d: float = 0.03, rho: float = 1.0,
                    level: float = 0.95, **kwargs: Any):
        """Bounds under an omitted confounder of strength ``(cf_y, cf_d)``, and robustness values.

        Omitted-variable-bias bounds (Chernozhukov et al. 2022) for ``gc.aipw`` and
        ``gc.dml_panel``; Cinelli-Hazlett partial R^2 bounds for ``gc.fe`` (``cf_y`` and
        ``cf_d`` are then the partial R^2 of the confounder with outcome and treatment).
        Other designs raise :class:`~geocausal.errors.DesignError`. Keywords (``null``,
        ``se_rule``, ``benchmarks``, ``benchmark``, ``kd``, ``ky``, ``q``) are those of
        :func:`geocausal.inference.sensitivity.estimate_sensitivity`.

        Returns
        -------
        geocausal.results.sensitivity.SensitivityReport
            The bounds, with ``plot()``.
        """
        from geocausal.inference.sensitivity import estimate_sensitivity
        from geocausal.results.sensitivity import SensitivityReport

        return SensitivityReport.of(
            estimate_sensitivity(self, cf_y=cf_y, cf_d=cf_d, rho=rho, level=level, **kwargs))

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write this estimate to ``path``; :func:`geocausal.load` reads it back exactly.

        A zip of JSON and ``.npy`` arrays, read without running code
        (:mod:`geocausal.results.io`); ``pickle`` works too.
        """
        from geocausal.results.io import save as _save

        return _save(self, path, overwrite=overwrite)

    def plot(self, ax=None, alpha: float = 0.05, **kwargs):
        """A curve plot for function-valued estimands, else a coefficient plot, titled with the
        estimand and design and stating the CI level; returns the Figure
        (:func:`geocausal.results.plot.estimate_plot`).
        """
        from geocausal.results.plot import estimate_plot

        return estimate_plot(self, ax=ax, alpha=alpha, **kwargs)


def _sensitivity_with_vcov(elements: Any, request: Any) -> Any:
    """Sensitivity elements whose bound variances follow a new vcov request."""
    if elements is None or request is None or not hasattr(elements, "vcov"):
        return elements
    return replace(elements, vcov=request)


def _null_series(null: Any, index: pd.Index) -> pd.Series:
    """The null value of each term: zeros, a scalar for all, or a mapping (missing terms: 0)."""
    if null is None:
        out = pd.Series(0.0, index=index)
    elif np.isscalar(null):
        out = pd.Series(null, index=index, dtype=float)
    else:
        given = pd.Series(null, dtype=float)
        unknown = [str(k) for k in given.index if k not in index]
        if unknown:
            raise DataError(f"null values given for unknown terms {unknown}; terms are "
                            f"{list(map(str, index))}")
        out = given.reindex(index).fillna(0.0)
    if not np.all(np.isfinite(out.to_numpy())):
        raise DataError("null values must be finite numbers")
    out = out.astype(float)
    out.index = index
    return out


_SKIP = object()
_JSON_SCALARS = (float, int, str, bool, np.generic, _dt.date, _dt.datetime, _dt.timedelta,
                 pd.Timestamp, pd.Timedelta, Path)


#: the value columns of a table (after its key columns), where they exist
_TABLE_NUMERIC = ("estimate", "std_error", "ci_low", "ci_high", "ucb_low", "ucb_high")
_TABLE_ALIASES = {"conf_low": "ci_low", "conf_high": "ci_high"}


def _check_tables(tables: Any) -> Mapping[str, pd.DataFrame]:
    """Validate ``tables``: string names to DataFrames whose value columns follow the one
    convention (``estimate``, ``std_error``, ``ci_low``/``ci_high``, ``ucb_low``/``ucb_high``:
    numeric, bands with both ends).
    """
    if tables is None:
        return {}
    if not isinstance(tables, Mapping):
        raise DataError(f"tables must be a mapping of names to DataFrames, got "
                        f"{type(tables).__name__}")
    for k, v in tables.items():
        if not isinstance(k, str) or not k:
            raise DataError(f"table names must be non-empty strings, got {k!r}")
        if not isinstance(v, pd.DataFrame):
            raise DataError(f"tables[{k!r}] must be a pandas DataFrame, got "
                            f"{type(v).__name__}; put fitted models in fitted=")
        cols = {str(c) for c in v.columns}
        foreign = sorted(cols & set(_TABLE_ALIASES))
        if foreign:
            raise DataError(f"tables[{k!r}] has column(s) {foreign}; tables name their bands "
                            f"{[_TABLE_ALIASES[c] for c in foreign]} (tidy() keeps conf_low/"
                            "conf_high): rename them")
        for lo, hi in (("ci_low", "ci_high"), ("ucb_low", "ucb_high")):
            if (lo in cols) != (hi in cols):
                raise DataError(f"tables[{k!r}] has only one of {lo!r} and {hi!r}; give both "
                                "ends of the band")
        for c in _TABLE_NUMERIC:
            if c in cols and not (pd.api.types.is_numeric_dtype(v[c])
                                  and not pd.api.types.is_bool_dtype(v[c])):
                raise DataError(f"tables[{k!r}][{c!r}] must be numeric, got dtype {v[c].dtype}")
    return tables


def _not_json_like(obj: Any, where: str, out: list[str]) -> None:
    """Append to ``out`` the place and type of every value under ``obj`` that ``to_dict``
    cannot write (fitted models, user objects); numeric arrays are not walked.
    """
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _not_json_like(v, f"{where}[{k!r}]", out)
    elif isinstance(obj, pd.DataFrame):
        for j, dt in enumerate(obj.dtypes):
            if dt == np.dtype(object):
                _not_json_like(obj.iloc[:, j].tolist(), f"{where}[{obj.columns[j]!r}]", out)
    elif isinstance(obj, pd.Series | pd.Index | np.ndarray):
        if obj.dtype == object:
            _not_json_like(list(np.asarray(obj, dtype=object).ravel()), where, out)
    elif isinstance(obj, list | tuple | set | frozenset):
        for j, v in enumerate(obj):
            _not_json_like(v, f"{where}[{j}]", out)
    elif _is_geocausal_dataclass(obj) and not getattr(type(obj), "_not_saved", False):
        for f in dataclasses.fields(obj):
            if f.repr:
                _not_json_like(getattr(obj, f.name), f"{where}.{f.name}", out)
    elif not isinstance(obj, _JSON_SCALARS) and obj is not None:
        cls = type(obj)
        out.append(f"{where} ({cls.__module__}.{cls.__qualname__})")


def _check_diagnostics(diagnostics: Any) -> None:
    """DataError when ``diagnostics`` hold something ``to_dict`` cannot write (a fitted model):
    models go in ``fitted=``, grouped or function-valued estimands in ``tables=``.
    """
    if diagnostics is None:
        return
    if not isinstance(diagnostics, Mapping):
        raise DataError(f"diagnostics must be a mapping, got {type(diagnostics).__name__}")
    bad: list[str] = []
    _not_json_like(diagnostics, "diagnostics", bad)
    if bad:
        shown = "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} diagnostics value(s) are not data (numbers, strings, "
                        f"arrays, pandas objects, mappings, geocausal result classes): {shown}. "
                        "Pass fitted models as Estimate(..., fitted=...) and tables of grouped "
                        "or function-valued estimands as tables={...}")


def _is_geocausal_dataclass(obj: Any) -> bool:
    cls = type(obj)
    return (dataclasses.is_dataclass(obj) and not isinstance(obj, type)
            and cls.__module__.split(".")[0] == "geocausal")


def _jsonable(obj: Any, where: str = "", left_out: list[str] | None = None) -> Any:  # noqa: C901
    """JSON-ready copy of ``obj``; a value that is not JSON-like (a fitted model) is left out
    and its place (``where``) and type appended to ``left_out``, never turned into a string.
    """
    out = _jsonable_inner(obj, where, [] if left_out is None else left_out)
    return None if out is _SKIP else out


def _jsonable_inner(obj: Any, where: str, left_out: list[str]) -> Any:  # noqa: C901
    if isinstance(obj, Mapping):
        pairs = ((str(k), _jsonable_inner(v, f"{where}[{k!r}]", left_out))
                 for k, v in obj.items())
        return {k: v for k, v in pairs if v is not _SKIP}
    if isinstance(obj, pd.DataFrame):
        return _jsonable_inner(obj.to_dict(orient="list"), where, left_out)
    if isinstance(obj, pd.Series):
        return _jsonable_inner({str(k): v for k, v in obj.items()}, where, left_out)
    if isinstance(obj, pd.Index):
        return _jsonable_inner(obj.tolist(), where, left_out)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            return obj.tolist()
        return _jsonable_inner(obj.tolist(), where, left_out)
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        vals = (_jsonable_inner(v, f"{where}[{j}]", left_out) for j, v in enumerate(items))
        return [v for v in vals if v is not _SKIP]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    if isinstance(obj, _dt.date | _dt.datetime | pd.Timestamp | pd.Timedelta):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return pd.Timedelta(obj).isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if _is_geocausal_dataclass(obj) and not getattr(type(obj), "_not_saved", False):
        return _jsonable_inner({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                                if f.repr}, where, left_out)
    cls = type(obj)
    left_out.append(f"{where} ({cls.__module__}.{cls.__qualname__})")
    return _SKIP


@dataclass(frozen=True)
class Summary:
    """Text and HTML rendering of an :class:`Estimate`."""

    estimate: Estimate
    alpha: float = 0.05

    def _header(self) -> list[tuple[str, str]]:
        e = self.estimate
        rows = [("Design", e.design), ("Estimand", e.estimand), ("Observations", f"{e.nobs:,}"),
                ("Variance", e.vcov_type)]
        if e.dof is not None:
            rows.append(("Tests", f"t({e.dof})"))
        return rows

    def _table(self) -> pd.DataFrame:
        tab = self.estimate.tidy(self.alpha)
        null = self.estimate._null_values
        if np.any(null.to_numpy() != 0):
            tab.insert(tab.columns.get_loc("statistic"), "null", null.to_numpy())
        return tab

    def _diag_lines(self) -> list[str]:
        out = []
        for k, v in self.estimate.diagnostics.items():
            if isinstance(v, int | float | str | np.generic) and not isinstance(v, bool):
                out.append(f"{k}: {v:.4g}" if isinstance(v, float | np.floating) else f"{k}: {v}")
        return out

    def __str__(self) -> str:
        tab = self._table().set_index("term")
        lines = [f"{k:<13}{v}" for k, v in self._header()]
        lines += ["", tab.to_string(float_format=lambda x: f"{x:.4f}")]
        diag = self._diag_lines()
        if diag:
            lines += ["", "Diagnostics:"] + ["  " + d for d in diag]
        if self.estimate.tables:
            lines += ["", "Tables: " + ", ".join(self.estimate.tables) + " (est.table(name))"]
        q = self.estimate.diagnostics.get("nuisance_quality")
        if isinstance(q, pd.DataFrame) and len(q):
            lines += ["", "Nuisance quality (out-of-fold):",
                      q.to_string(index=False, float_format=lambda x: f"{x:.4f}")]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in self._header())
        tab = self._table().to_html(index=False, float_format="%.4f")
        return f"<div><table>{head}</table>{tab}</div>"


@dataclass(frozen=True)
class EstimateSet:
    """Several estimates (subgroups, specifications) side by side.

    Examples
    --------
    >>> import pandas as pd
    >>> a = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]), estimand="ATE")
    >>> b = Estimate(pd.Series({"d": 2.0}), pd.DataFrame([[0.09]]), estimand="ATE")
    >>> s = EstimateSet((a, b), ("A", "B"))
    >>> s.tidy()[["model", "estimate"]].values.tolist()
    [['A', 1.0], ['B', 2.0]]
    """

    estimates: tuple[Estimate, ...]
    names: tuple[str, ...]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "estimates", tuple(self.estimates))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "diagnostics", _freeze(self.diagnostics))
        if len(self.estimates) != len(self.names):
            raise DataError("EstimateSet needs one name per estimate")

    def __len__(self) -> int:
        return len(self.estimates)

    def __iter__(self):
        return iter(self.estimates)

    def __getitem__(self, key: int | str) -> Estimate:
        if isinstance(key, str):
            return self.estimates[self.names.index(key)]
        return self.estimates[key]

    def tidy(self, alpha: float = 0.05, adjust: Sequence[str] = ("holm", "bh")) -> pd.DataFrame:
        """Stacked tidy tables with a ``model`` column and adjusted p-values per method."""
        parts = []
        for name, est in zip(self.names, self.estimates):
            t = est.tidy(alpha)
            t.insert(0, "model", name)
            parts.append(t)
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        for m in adjust:
            out[f"p_{m}"] = adjust_pvalues(out["p_value"].to_numpy(), m) if len(out) else []
        return out

    def etable(self, digits: int = 3, alpha: float = 0.05, terms: Sequence[str] | None = None,
               fmt: str = "frame", **kwargs: Any) -> pd.DataFrame | str:
        """Estimates with standard errors below them, one column per model.

        The same table as :func:`geocausal.results.table.etable` (``gc.etable(self)``), which
        documents ``fmt`` (``"frame"``, the default here, ``"text"``, ``"md"``, ``"latex"``,
        ``"html"``) and the other options (``keep``, ``drop``, ``labels``, ``names``, ``below``,
        ``stars``, ``caption``). ``terms`` keeps exactly those terms.
        """
        from geocausal.results.table import etable as _etable

        if terms is not None:
            if "keep" in kwargs:
                raise DataError("etable takes terms= or keep=, not both")
            kwargs["keep"] = ["^" + re.escape(str(t)) + "$" for t in terms]
        return _etable(self, fmt=fmt, digits=digits, alpha=alpha, **kwargs)

    def plot(self, ax=None, alpha: float = 0.05, **kwargs):
        """Coefficient plot of every estimate (rows ``model: term``) stating the CI level;
        returns the Figure (:func:`geocausal.results.plot.estimate_set_plot`).
        """
        from geocausal.results.plot import estimate_set_plot

        return estimate_set_plot(self, ax=ax, alpha=alpha, **kwargs)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write every estimate to ``path``; :func:`geocausal.load` reads it back exactly."""
        from geocausal.results.io import save as _save

        return _save(self, path, overwrite=overwrite)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every estimate."""
        left_out: list[str] = []
        out = {"models": {n: e.to_dict() for n, e in zip(self.names, self.estimates)},
               "diagnostics": _jsonable(dict(self.diagnostics), "diagnostics", left_out)}
        if left_out:
            out["not_serialised"] = left_out
        return out

    def _repr_html_(self) -> str:
        return self.etable(fmt="html")

    def __repr__(self) -> str:
        return self.etable(fmt="text")
