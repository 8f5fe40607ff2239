"""``gc.sensitivity_benchmark``: how strong the confounders we did observe are.

The omitted-variable-bias bounds of ``est.sensitivity(cf_y, cf_d)`` need a sense of scale:
what ``cf_y`` and ``cf_d`` would a confounder have that is as strong as a group of observed
controls? Each group is left out and the design refit on the same folds (same ``seed`` and
``folds``); the gain in the outcome's explained variation and in the Riesz representer's
variation between the short and the long fit gives the benchmark (DoubleML's
``sensitivity_benchmark`` / ``gain_statistics``, with medians over repetitions). A group is:

- one or several tabular controls (formula terms, e.g. ``"x1"`` or ``["x1", "C(region)"]``);
- ``"images"``: all image features together, a confounder "as strong as everything the
  images captured". The refit drops ``images=`` and keeps the formula's controls (a constant
  feature when there are none, so the short nuisances are the sample means).

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sklearn.linear_model import LinearRegression, LogisticRegression
>>> rng = np.random.default_rng(0); n = 400
>>> df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
>>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-df.x1))); df["y"] = df.d + df.x1 + df.x2 + rng.normal(size=n)
>>> lrn = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
>>> b = sensitivity_benchmark("y ~ d + x1 + x2", df, "x1", learners=lrn)
>>> list(b.columns[:4])
['group', 'cf_y', 'cf_d', 'rho']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError
from geocausal.formula import parse_formula
from geocausal.inference.sensitivity import (
    SensitivityElements,
    confounding_strength,
    gain_statistics,
)

CONST = "_gc_benchmark_const"


def _design_fn(design: str):
    from geocausal.api.dml_panel import dml_panel
    from geocausal.api.ipw import aipw

    fns = {"aipw": aipw, "dml_panel": dml_panel}
    if design not in fns:
        raise DataError(f"design '{design}' has no OVB sensitivity benchmarks; use one of "
                        f"{sorted(fns)} (gc.fe: est.sensitivity(benchmark=...))")
    return fns[design]


def _groups(benchmark: Any) -> dict[str, list[str]]:
    if isinstance(benchmark, str):
        return {benchmark: [benchmark]}
    if isinstance(benchmark, Mapping):
        out = {str(k): [v] if isinstance(v, str) else list(v) for k, v in benchmark.items()}
    elif isinstance(benchmark, Sequence):
        out = {" + ".join(map(str, benchmark)): [str(b) for b in benchmark]}
    else:
        raise DataError(f"benchmark must be a control name, a list of them, 'images' or "
                        f"{{label: [controls]}}, got {type(benchmark).__name__}")
    if not out or any(not v for v in out.values()):
        raise DataError("benchmark names no control: give at least one")
    return out


def _short_formula(pf, drop: Sequence[str]) -> tuple[str, bool]:
    rest = [c for c in pf.controls if c not in drop]
    const = not rest
    rhs = " + ".join([pf.treatment, *(rest or [CONST])])
    fe = f" | {' + '.join(pf.fixed_effects)}" if pf.fixed_effects else ""
    return f"{pf.outcome} ~ {rhs}{fe}", const


def _elements(est: Any, what: str) -> SensitivityElements:
    el = getattr(est, "sensitivity_elements", None)
    if not isinstance(el, SensitivityElements):
        raise DesignError(f"the {what} fit has no OVB sensitivity elements "
                          f"({el if isinstance(el, str) else 'design not supported'})")
    return el


def sensitivity_benchmark(
    formula: str,
    data: pd.DataFrame,
    benchmark: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    *,
    design: str = "aipw",
    long: Any = None,
    rho: float | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Benchmark ``cf_y``, ``cf_d`` and ``rho`` of confounders as strong as observed groups.

    Parameters
    ----------
    formula, data
        As given to the design.
    benchmark
        A control (formula term), a list of controls (one group), ``"images"`` (every image
        feature), or ``{label: control(s) or "images"}`` for several groups.
    design
        ``"aipw"`` or ``"dml_panel"``.
    long
        The full fit, if already computed with the same ``formula``, ``data`` and ``kwargs``
        (otherwise it is refit).
    rho
        The ``rho`` of the bounds reported at each benchmark; default the benchmark's own
        ``|rho|``.
    **kwargs
        The design's keywords (``images=``, ``learners=``, ``folds=``, ``seed=``, ...), the same
        for the long and the short fits, so the folds are equal.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group, cf_y, cf_d, rho, delta_theta, theta_long, theta_short``
        and the bounds ``theta_lower, theta_upper`` of the long estimate at that strength
        (NaN when ``cf_d`` reaches 1). Pass it to ``est.sensitivity(benchmarks=...)``.

    Raises
    ------
    DataError
        A group names no control of the formula, or ``"images"`` without ``images=``.
    """
    fit = _design_fn(design)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    pf = parse_formula(formula, data)
    groups = _groups(benchmark)
    for label, cols in groups.items():
        if cols == ["images"]:
            if kwargs.get("images") is None:
                raise DataError(f"benchmark '{label}' is 'images' but the fit has no images=")
            continue
        unknown = [c for c in cols if c not in pf.controls]
        if unknown:
            raise DataError(f"benchmark group '{label}' names {unknown}, which are not controls "
                            f"of '{formula}'; controls are {list(pf.controls)}")
        if "images" in cols:
            raise DataError(f"benchmark group '{label}': give 'images' as a group of its own")
    long = fit(formula, data, **kwargs) if long is None else long
    el_long = _elements(long, "long")
    rows = []
    for label, cols in groups.items():
        kw = dict(kwargs)
        drop: list[str] = []
        if cols == ["images"]:
            kw["images"] = None
        else:
            drop = cols
        f_short, const = _short_formula(pf, drop)
        if kw.get("images") is not None:  # controls left out but images remain: no constant
            f_short = f_short.replace(f" + {CONST}", "") if const else f_short
            const = False
        d_short = data.assign(**{CONST: 1.0}) if const else data
        short = fit(f_short, d_short, **kw)
        g = gain_statistics(el_long, _elements(short, "short"), label)
        r = abs(g["rho"]) if rho is None else abs(float(rho))
        if g["cf_d"] < 1 and g["cf_y"] < 1:
            cs = confounding_strength(g["cf_y"], g["cf_d"], r)
            s = float(np.median(el_long.max_bias))
            th = float(np.median(el_long.theta))
            g.update(theta_lower=th - cs * s, theta_upper=th + cs * s)
        else:
            g.update(theta_lower=np.nan, theta_upper=np.nan)
        g["refit"] = f_short + (" (without images)" if cols == ["images"] else "")
        rows.append(g)
    return pd.DataFrame(rows)
