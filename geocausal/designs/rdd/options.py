"""Validation of the options of a distributional RD, before any number is computed.

Every option of :func:`geocausal.rdd` is checked here once, so a bad value fails with a named
error that names the option and says what to pass instead of turning into a meaningless band
(``alpha=1.5`` gives a "band" that lies below its estimate; ``n_boot=0`` a critical value from
no draws; a negative bandwidth a fit on no units).

Examples
--------
>>> check_alpha(0.05)
0.05
>>> check_alpha(1.5)
Traceback (most recent call last):
...
geocausal.errors.DataError: alpha=1.5 must lie strictly between 0 and 1 (e.g. 0.05 for 95% bands)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geocausal.errors import DataError

MULTIPLIERS = ("normal", "rademacher", "mammen")
TESTS = ("nullity", "homogeneity", "dominance")
FUNCTIONAL_NAMES = ("mean", "variance", "gini")
METHODS = ("simple", "frechet")
BIAS_CORRECTIONS = ("implicit", "explicit")
VCES = ("nn", "hc0", "hc1", "hc2", "hc3")
REARRANGEMENTS = ("sort", "interpolate")
SMALL_SAMPLE = ("bell-mccaffrey", "none")


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float strictly inside (0, 1).

    Examples
    --------
    >>> check_alpha(0.1)
    0.1
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
            not np.isfinite(alpha) or not 0 < alpha < 1:
        raise DataError(f"alpha={alpha!r} must lie strictly between 0 and 1 "
                        "(e.g. 0.05 for 95% bands)")
    return float(alpha)


def check_int(value: Any, name: str, minimum: int) -> int:
    """An integer option (numpy integers allowed, bools and floats refused) ``>= minimum``.

    Examples
    --------
    >>> check_int(3, "p", 0)
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """A string option among ``choices``.

    Examples
    --------
    >>> check_choice("hc2", "vce", VCES)
    'hc2'
    """
    if not isinstance(value, str) or value not in choices:
        raise DataError(f"{name}={value!r} is not one of {tuple(choices)}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """A boolean option (numpy booleans allowed).

    Examples
    --------
    >>> check_bool(True, "studentize")
    True
    """
    if not isinstance(value, bool | np.bool_):
        raise DataError(f"{name}={value!r} must be True or False")
    return bool(value)


def check_positive(value: Any, name: str, allow_zero: bool = False) -> np.ndarray:
    """Finite values ``> 0`` (``>= 0`` with ``allow_zero``) as a flat float array.

    Examples
    --------
    >>> check_positive([0.5, 1.0], "h").tolist()
    [0.5, 1.0]
    """
    try:
        a = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{name}={value!r} must be a number or an array of numbers") from None
    if a.size == 0:
        raise DataError(f"{name} is empty; give at least one value")
    bad = ~np.isfinite(a) | ((a < 0) if allow_zero else (a <= 0))
    if bad.any():
        rule = ">= 0" if allow_zero else "> 0"
        raise DataError(f"{name} has {int(bad.sum())} value(s) that are not finite and {rule} "
                        f"(first: {a[bad][0]!r}); pass {'non-negative' if allow_zero else 'positive'}"
                        " finite values")
    return a


def check_bandwidth_value(h: Any, name: str) -> None:
    """A user bandwidth: ``None``, positive numbers, or ``{"plus": ..., "minus": ...}``.

    Examples
    --------
    >>> check_bandwidth_value({"plus": 0.4, "minus": 0.5}, "h")
    """
    if h is None:
        return
    if isinstance(h, Mapping):
        if set(h) != {"plus", "minus"}:
            raise DataError(f"a per-side {name} dict needs keys 'plus' and 'minus', got "
                            f"{sorted(map(str, h))}")
        for side in ("plus", "minus"):
            check_positive(h[side], f"{name}['{side}']")
        return
    check_positive(h, name)


def check_test_range(test_range: Any) -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)`` with ``0 < lo <= hi < 1``.

    Examples
    --------
    >>> check_test_range([0.2, 0.8])
    (0.2, 0.8)
    """
    if test_range is None:
        return None
    try:
        lo, hi = (float(v) for v in test_range)
    except (TypeError, ValueError):
        raise DataError(f"test_range={test_range!r} must be two quantile levels (lo, hi)") from None
    if not (0 < lo <= hi < 1):
        raise DataError(f"test_range=({lo}, {hi}) must satisfy 0 < lo <= hi < 1")
    return lo, hi


def check_names(values: Any, name: str, choices: Sequence[str]) -> tuple[str, ...]:
    """A sequence of names (not a bare string) each among ``choices``.

    Examples
    --------
    >>> check_names(["mean"], "functionals", FUNCTIONAL_NAMES)
    ('mean',)
    """
    if values is None:
        return ()
    if isinstance(values, str):
        raise DataError(f"{name}={values!r} must be a list of names, e.g. [{values!r}]")
    out = tuple(values)
    bad = [v for v in out if v not in choices]
    if bad:
        raise DataError(f"{name} has unknown entries {bad}; choose among {tuple(choices)}")
    return out


def validate_rdd_options(*, method: Any, p: Any, s: Any, kernel: Any, h: Any, h_den: Any,
                         b: Any, per_side: Any, bias_correction: Any, vce: Any,
                         small_sample: Any, rearrangement: Any, donut: Any,
                         n_boot: Any, alpha: Any, studentize: Any, multiplier: Any, tests: Any,
                         test_range: Any, functionals: Any, density_test: Any, placebo: Any,
                         sensitivity: Any, donuts: Any, seed: Any, cutoff: Any,
                         reference_quirks: Any) -> None:
    """Check every option of :func:`geocausal.rdd`; raise a :class:`DataError` naming the first
    bad one. (The bandwidth rule is checked by the estimator, which owns the list of rules.)

    Examples
    --------
    >>> opts = dict(method="simple", p=2, s=1, kernel="triangular", h=None, h_den=None, b=None,
    ...             per_side=False, bias_correction="implicit", vce="hc2",
    ...             small_sample=None, rearrangement="sort", donut=0.0,
    ...             n_boot=200, alpha=0.05, studentize=True, multiplier="normal",
    ...             tests=("nullity",), test_range=None, functionals=("mean",),
    ...             density_test=True, placebo=None, sensitivity=None, donuts=None, seed=0,
    ...             cutoff=0.0, reference_quirks=False)
    >>> validate_rdd_options(**opts)
    >>> validate_rdd_options(**{**opts, "n_boot": 0})
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: n_boot=0 must be an integer >= 1
    """
    from geocausal.designs.rdd.locpoly import kernel_name

    check_choice(method, "method", METHODS)
    check_int(p, "p", 0)
    check_int(s, "s", 0)
    kernel_name(kernel)
    check_bandwidth_value(h, "h")
    check_bandwidth_value(b, "b")
    if h_den is not None:
        hd = check_positive(h_den, "h_den")
        if hd.size != 1:
            raise DataError(f"h_den has {hd.size} values; the first stage takes one bandwidth")
    check_bool(per_side, "per_side")
    check_choice(bias_correction, "bias_correction", BIAS_CORRECTIONS)
    check_choice(vce, "vce", VCES)
    check_choice(rearrangement, "rearrangement", REARRANGEMENTS)
    if small_sample is not None:
        check_choice(small_sample, "small_sample", SMALL_SAMPLE)
    if check_positive(donut, "donut", allow_zero=True).size != 1:
        raise DataError("donut takes one radius; use donuts=[...] for a sensitivity table")
    check_int(n_boot, "n_boot", 1)
    check_alpha(alpha)
    check_bool(studentize, "studentize")
    check_choice(multiplier, "multiplier", MULTIPLIERS)
    check_names(tests, "tests", TESTS)
    check_test_range(test_range)
    check_names(functionals, "functionals", FUNCTIONAL_NAMES)
    check_bool(density_test, "density_test")
    check_bool(reference_quirks, "reference_quirks")
    check_int(seed, "seed", 0)
    c = np.asarray(cutoff, dtype=float) if isinstance(cutoff, numbers.Real) and \
        not isinstance(cutoff, bool) else None
    if c is None or not np.isfinite(c):
        raise DataError(f"cutoff={cutoff!r} must be a finite number")
    if placebo is not None:
        vals = np.asarray(placebo, dtype=float).ravel()
        if vals.size == 0 or not np.all(np.isfinite(vals)):
            raise DataError("placebo must be a non-empty list of finite cutoffs")
    if sensitivity is not None:
        check_positive(sensitivity, "sensitivity")
    if donuts is not None:
        check_positive(donuts, "donuts", allow_zero=True)
