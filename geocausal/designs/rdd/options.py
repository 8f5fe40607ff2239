"""The options of a distributional RD: three frozen option objects, validated on creation.

:func:`geocausal.rdd` groups its options by what they control:

- :class:`Bandwidth`: the local fit (selector, orders, kernel, user bandwidths, bias
  correction, rearrangement, donut);
- :class:`Inference`: the multiplier bootstrap and the bands (draws, level, residuals of the
  scores, small-sample critical values, studentisation, multipliers, tests, functionals);
- :class:`Checks`: the diagnostics refitted beside the estimate (density test, placebo
  cutoffs, bandwidth sensitivity, donut radii).

Each is a frozen dataclass with ``Literal`` types; every field is checked when the object is
made, so a bad value fails with an :class:`~geocausal.errors.OptionError` that names the field
and says what to pass instead of turning into a meaningless band (``alpha=1.5`` gives a
"band" below its estimate; ``n_boot=0`` a critical value from no draws; a negative bandwidth a
fit on no units). :func:`resolve_options` accepts the objects, plain dicts of their fields, a
selector name for ``bandwidth=``, and the old flat keywords of ``gc.rdd`` (deprecated, with a
``FutureWarning`` naming the new spelling).

Examples
--------
>>> Bandwidth(p=1, kernel="EPA").kernel
'epanechnikov'
>>> Inference(alpha=1.5)
Traceback (most recent call last):
...
geocausal.errors.OptionError: alpha=1.5 must lie strictly between 0 and 1 (e.g. 0.05 for 95% bands)
>>> check_alpha(0.05)
0.05
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from geocausal.errors import OptionError
from geocausal.vocabulary import DEFAULTS, check_bool

MULTIPLIERS = ("normal", "rademacher", "mammen")
TESTS = ("nullity", "homogeneity", "dominance")
FUNCTIONAL_NAMES = ("mean", "variance", "gini")
METHODS = ("simple", "frechet")
BIAS_CORRECTIONS = ("implicit", "explicit")
VCES = ("nn", "hc0", "hc1", "hc2", "hc3")
REARRANGEMENTS = ("sort", "interpolate")
SMALL_SAMPLE = ("bell-mccaffrey", "none")
KERNELS = ("triangular", "epanechnikov", "uniform")
#: bandwidth selectors: the R3D rules for any outcome, rdrobust's for point masses
SELECTORS = ("mse", "cer", "mserd", "msetwo", "msesum", "msecomb1", "msecomb2",
             "cerrd", "certwo", "cersum", "cercomb1", "cercomb2")

Method = Literal["simple", "frechet"]
Kernel = Literal["triangular", "epanechnikov", "uniform"]
Selector = Literal["mse", "cer", "mserd", "msetwo", "msesum", "msecomb1", "msecomb2",
                   "cerrd", "certwo", "cersum", "cercomb1", "cercomb2"]
BiasCorrection = Literal["implicit", "explicit"]
Residuals = Literal["nn", "hc0", "hc1", "hc2", "hc3"]
SmallSample = Literal["bell-mccaffrey", "none"]
Multiplier = Literal["normal", "rademacher", "mammen"]
Rearrangement = Literal["sort", "interpolate"]


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float strictly inside (0, 1).

    Examples
    --------
    >>> check_alpha(0.1)
    0.1
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
            not np.isfinite(float(alpha)) or not 0 < float(alpha) < 1:
        raise OptionError(f"alpha={alpha!r} must lie strictly between 0 and 1 "
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
        raise OptionError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """A string option among ``choices`` (case-insensitive; the canonical spelling is returned).

    Examples
    --------
    >>> check_choice("hc2", "vce", VCES)
    'hc2'
    """
    if not isinstance(value, str) or value.lower() not in choices:
        raise OptionError(f"{name}={value!r} is not one of {tuple(choices)}")
    return value.lower()


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
        raise OptionError(f"{name}={value!r} must be a number or an array of numbers") from None
    if a.size == 0:
        raise OptionError(f"{name} is empty; give at least one value")
    bad = ~np.isfinite(a) | ((a < 0) if allow_zero else (a <= 0))
    if bad.any():
        rule = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{name} has {int(bad.sum())} value(s) that are not finite and {rule} "
                        f"(first: {float(a[bad][0])!r}); pass {'non-negative' if allow_zero else 'positive'}"
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
            raise OptionError(f"a per-side {name} dict needs keys 'plus' and 'minus', got "
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
        raise OptionError(f"test_range={test_range!r} must be two quantile levels (lo, hi)") from None
    if not (0 < lo <= hi < 1):
        raise OptionError(f"test_range=({lo}, {hi}) must satisfy 0 < lo <= hi < 1")
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
        raise OptionError(f"{name}={values!r} must be a list of names, e.g. [{values!r}]")
    out = tuple(values)
    bad = [v for v in out if v not in choices]
    if bad:
        raise OptionError(f"{name} has unknown entries {bad}; choose among {tuple(choices)}")
    return out




def _floats(value: Any, name: str, allow_zero: bool) -> tuple[float, ...] | None:
    return None if value is None else tuple(check_positive(value, name, allow_zero).tolist())


@dataclass(frozen=True)
class Bandwidth:
    """Options of the local fit of :func:`geocausal.rdd` (``bandwidth=``).

    ``None`` fields take the default of the outcome's kind: rdrobust's conventions for
    point-mass (scalar) outcomes, the R3D paper's for distributions.

    Attributes
    ----------
    selector : str or None
        ``"mse"`` (MSE-optimal per quantile, IMSE common for "frechet") or ``"cer"``
        (coverage-error rule) for any outcome (``"mse"`` is the default for distributions);
        for point masses also rdrobust's selectors ``"mserd"`` (default; ``"msetwo"`` with
        ``per_side=True``), ``"msetwo"``, ``"msesum"``, ``"msecomb1"``, ``"msecomb2"``,
        ``"cerrd"``, ``"certwo"``, ``"cersum"``, ``"cercomb1"``, ``"cercomb2"`` (equal to
        ``rdbwselect``). ``gc.rdd(bandwidth="cer")`` is short for
        ``bandwidth=Bandwidth(selector="cer")``.
    p : int or None
        Estimation order: 1 for point masses (rdrobust), 2 for distributions (the R3D paper's
        implicit bias correction).
    s : int
        Order the selected bandwidth is optimal for ("mse"/"cer" rules).
    kernel : {"triangular", "epanechnikov", "uniform"}
        Kernel (``"tri"``, ``"epa"``, ``"uni"`` accepted, any case).
    h, b : float, array, dict or None
        User bandwidth of the fit and of the explicit bias correction: a scalar, one per
        quantile, or ``{"plus": ..., "minus": ...}``; ``None`` selects it.
    h_den : float or None
        Bandwidth of the first stage (fuzzy designs); selected when ``None``.
    per_side : bool
        Separate selected bandwidths on each side of the cutoff.
    bias_correction : {"implicit", "explicit"} or None
        ``"implicit"`` (p = s + 1 at the order-s bandwidth; default for distributions) or
        ``"explicit"`` (Calonico, Cattaneo and Titiunik; default for point masses, where
        ``params`` then has rdrobust's robust row ``"mean"`` and conventional row
        ``"mean (conventional)"``).
    rearrangement : {"sort", "interpolate"}
        Monotonisation of the "simple" side limits: the exact sort on the grid, or the
        reference implementation's fine-grid rearrangement.
    donut : float
        Drop units with ``|running - cutoff| < donut`` (a counted warning).

    Examples
    --------
    >>> Bandwidth(selector="CER", per_side=True).selector
    'cer'
    >>> Bandwidth(h=-0.3)
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: h has 1 value(s) that are not finite and > 0 (first: -0.3); pass positive finite values
    """

    selector: Selector | None = None
    p: int | None = None
    s: int = 1
    kernel: Kernel = "triangular"
    h: Any = None
    h_den: float | None = None
    b: Any = None
    per_side: bool = False
    bias_correction: BiasCorrection | None = None
    rearrangement: Rearrangement = "sort"
    donut: float = 0.0

    def __post_init__(self) -> None:
        from geocausal.designs.rdd.locpoly import kernel_name

        if self.selector is not None:
            if not isinstance(self.selector, str) or self.selector.lower() not in SELECTORS:
                raise OptionError(f"bandwidth rule {self.selector!r} is not 'mse', 'cer' or one "
                                  f"of rdrobust's selectors {SELECTORS[2:]}")
            object.__setattr__(self, "selector", self.selector.lower())
        if self.p is not None:
            check_int(self.p, "p", 0)
        check_int(self.s, "s", 0)
        try:
            object.__setattr__(self, "kernel", kernel_name(self.kernel))
        except Exception:
            raise OptionError(f"kernel={self.kernel!r} is not one of {KERNELS} "
                              "(or 'tri', 'epa', 'uni')") from None
        check_bandwidth_value(self.h, "h")
        check_bandwidth_value(self.b, "b")
        if self.h_den is not None:
            hd = check_positive(self.h_den, "h_den")
            if hd.size != 1:
                raise OptionError(f"h_den has {hd.size} values; the first stage takes one "
                                  "bandwidth")
            object.__setattr__(self, "h_den", float(hd[0]))
        check_bool("per_side", self.per_side)
        if self.bias_correction is not None:
            object.__setattr__(self, "bias_correction", check_choice(
                self.bias_correction, "bias_correction", BIAS_CORRECTIONS))
        object.__setattr__(self, "rearrangement", check_choice(
            self.rearrangement, "rearrangement", REARRANGEMENTS))
        d = check_positive(self.donut, "donut", allow_zero=True)
        if d.size != 1:
            raise OptionError("donut takes one radius; use Checks(donuts=[...]) for a "
                              "sensitivity table")
        object.__setattr__(self, "donut", float(d[0]))


@dataclass(frozen=True)
class Inference:
    """Options of the multiplier bootstrap and the bands of :func:`geocausal.rdd`
    (``inference=``).

    Attributes
    ----------
    n_boot : int
        Bootstrap draws (default :data:`geocausal.vocabulary.DEFAULTS` ``.n_boot``, 999).
    alpha : float
        One minus the level of the pointwise and uniform bands.
    residuals : {"nn", "hc0", "hc1", "hc2", "hc3"} or None
        Residuals of the scores (rdrobust's ``vce``): nearest neighbours (default for point
        masses, as rdrobust), plain (``"hc0"``, rdrobust's ``vce="hc0"``), degrees of freedom
        (``"hc1"``), leverage-weighted (``"hc2"``, default for distributions) or jackknife-like
        (``"hc3"``). Clustering is ``vcov={"cluster": column}`` of ``gc.rdd``.
    small_sample : {"bell-mccaffrey", "none"} or None
        ``"bell-mccaffrey"`` (default for distributions): t critical values at the
        Bell-McCaffrey degrees of freedom of each quantile (``G - 1`` with clusters), which
        brings the uniform coverage at n = 200 from 0.89 to 0.95
        (``paper/r3d/coverage_mc.md``); ``"none"`` (default for point masses): normal ones.
    studentize : bool
        Studentized (variable-width) uniform bands.
    multiplier : {"normal", "rademacher", "mammen"}
        Multiplier law; normal draws come from their exact Gaussian law.
    xi : array or None
        A fixed ``(n or G, B)`` multiplier matrix (for comparisons with published draws).
    tests : tuple of str
        Curve tests: ``"nullity"``, ``"homogeneity"``, ``"dominance"``.
    test_range : (float, float) or None
        Quantile range of the tests.
    functionals : tuple of str
        Functionals whose effects are reported: ``"mean"``, ``"variance"``, ``"gini"``.
    reference_quirks : bool
        Reproduce the reference implementation's bootstrap (positive weights only); for
        comparisons with its published outputs only.

    Examples
    --------
    >>> Inference(n_boot=200, tests=["nullity"]).tests
    ('nullity',)
    >>> Inference(multiplier="gauss")
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: multiplier='gauss' is not one of ('normal', 'rademacher', 'mammen')
    """

    n_boot: int = DEFAULTS.n_boot
    alpha: float = DEFAULTS.alpha
    residuals: Residuals | None = None
    small_sample: SmallSample | None = None
    studentize: bool = True
    multiplier: Multiplier = "normal"
    xi: Any = field(default=None, compare=False, repr=False)
    tests: tuple[str, ...] = TESTS
    test_range: tuple[float, float] | None = None
    functionals: tuple[str, ...] = FUNCTIONAL_NAMES
    reference_quirks: bool = False

    def __post_init__(self) -> None:
        check_int(self.n_boot, "n_boot", 1)
        check_alpha(self.alpha)
        if self.residuals is not None:
            object.__setattr__(self, "residuals", check_choice(self.residuals, "residuals",
                                                               VCES))
        if self.small_sample is not None:
            object.__setattr__(self, "small_sample", check_choice(
                self.small_sample, "small_sample", SMALL_SAMPLE))
        check_bool("studentize", self.studentize)
        object.__setattr__(self, "multiplier", check_choice(self.multiplier, "multiplier",
                                                            MULTIPLIERS))
        if self.xi is not None:
            xi = np.asarray(self.xi, dtype=float)
            if xi.ndim != 2 or not np.all(np.isfinite(xi)):
                raise OptionError(f"xi must be a finite 2-D multiplier matrix, got shape "
                                  f"{xi.shape}")
        object.__setattr__(self, "tests", check_names(self.tests, "tests", TESTS))
        object.__setattr__(self, "test_range", check_test_range(self.test_range))
        object.__setattr__(self, "functionals", check_names(self.functionals, "functionals",
                                                            FUNCTIONAL_NAMES))
        check_bool("reference_quirks", self.reference_quirks)


@dataclass(frozen=True)
class Checks:
    """Diagnostics refitted beside the estimate of :func:`geocausal.rdd` (``checks=``).

    Attributes
    ----------
    density_test : bool
        McCrary test of a jump in the density of the running variable.
    placebo : tuple of float or None
        Placebo cutoffs (values of the running variable), each fitted on the units of its side.
    sensitivity : tuple of float or None
        Bandwidth multipliers (refits at ``h * factor``).
    donuts : tuple of float or None
        Donut radii (refits without the units nearer than the radius).

    Examples
    --------
    >>> Checks(placebo=[-0.5, 0.5], density_test=False).placebo
    (-0.5, 0.5)
    """

    density_test: bool = True
    placebo: tuple[float, ...] | None = None
    sensitivity: tuple[float, ...] | None = None
    donuts: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_bool("density_test", self.density_test)
        if self.placebo is not None:
            try:
                vals = np.asarray(self.placebo, dtype=float).ravel()
            except (TypeError, ValueError):
                vals = np.array([np.nan])
            if vals.size == 0 or not np.all(np.isfinite(vals)):
                raise OptionError("placebo must be a non-empty list of finite cutoffs")
            object.__setattr__(self, "placebo", tuple(vals.tolist()))
        object.__setattr__(self, "sensitivity", _floats(self.sensitivity, "sensitivity", False))
        object.__setattr__(self, "donuts", _floats(self.donuts, "donuts", True))


#: the old flat keywords of ``gc.rdd`` -> (option object, field); deprecated aliases
LEGACY: Mapping[str, tuple[str, str]] = {
    **{k: ("bandwidth", k) for k in ("p", "s", "kernel", "h", "h_den", "b", "per_side",
                                     "bias_correction", "rearrangement", "donut")},
    **{k: ("inference", k) for k in ("n_boot", "alpha", "small_sample", "studentize",
                                     "multiplier", "xi", "tests", "test_range", "functionals",
                                     "reference_quirks")},
    "vce": ("inference", "residuals"),
    **{k: ("checks", k) for k in ("density_test", "placebo", "sensitivity", "donuts")},
}

_CLASSES = {"bandwidth": Bandwidth, "inference": Inference, "checks": Checks}


def as_option(value: Any, kind: str) -> Any:
    """``None``, an option object, or a dict of its fields (``bandwidth=`` also takes a
    selector name) as the option object of ``kind`` (``"bandwidth"``, ``"inference"`` or
    ``"checks"``).

    Examples
    --------
    >>> as_option({"n_boot": 200}, "inference").n_boot
    200
    >>> as_option("cer", "bandwidth").selector
    'cer'
    >>> as_option({"nboot": 200}, "inference")
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: inference= has no option 'nboot'; its options are n_boot, alpha, residuals, small_sample, studentize, multiplier, xi, tests, test_range, functionals, reference_quirks
    """
    cls = _CLASSES[kind]
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if kind == "bandwidth" and isinstance(value, str):
        return cls(selector=value)
    if isinstance(value, Mapping):
        names = [f.name for f in dataclasses.fields(cls)]
        bad = [k for k in value if k not in names]
        if bad:
            raise OptionError(f"{kind}= has no option {bad[0]!r}; its options are "
                              f"{', '.join(names)}")
        return cls(**value)
    extra = " or a selector name such as 'mse'" if kind == "bandwidth" else ""
    raise OptionError(f"{kind}= takes a gc.{cls.__name__}, a dict of its fields{extra} or None; "
                      f"got {type(value).__name__}")


def resolve_options(bandwidth: Any = None, inference: Any = None, checks: Any = None,
                    legacy: Mapping[str, Any] | None = None,
                    stacklevel: int = 3) -> tuple[Bandwidth, Inference, Checks]:
    """The three option objects of ``gc.rdd``, with its old flat keywords folded in.

    Parameters
    ----------
    bandwidth, inference, checks
        What the user passed (see :func:`as_option`).
    legacy
        Old flat keywords (``p=``, ``n_boot=``, ``vce=``, ``density_test=``, ...): each is
        deprecated, gives one ``FutureWarning`` naming the new spelling, and still works. A
        keyword that is neither old nor new raises ``TypeError`` (as Python would).
    stacklevel
        Of the warning.

    Returns
    -------
    tuple
        ``(Bandwidth, Inference, Checks)``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     bw, inf, chk = resolve_options(legacy={"vce": "hc0", "n_boot": 50})
    >>> inf.residuals, inf.n_boot, w[0].category.__name__
    ('hc0', 50, 'FutureWarning')
    """
    legacy = dict(legacy or {})
    unknown = sorted(k for k in legacy if k not in LEGACY)
    if unknown:
        raise TypeError(f"rdd() got an unexpected keyword argument {unknown[0]!r}")
    objs = {"bandwidth": bandwidth, "inference": inference, "checks": checks}
    moved: dict[str, dict[str, Any]] = {k: {} for k in objs}
    for key, value in legacy.items():
        kind, name = LEGACY[key]
        moved[kind][name] = value
    if legacy:
        hints = ", ".join(f"{k}= -> {LEGACY[k][0]}=gc.{_CLASSES[LEGACY[k][0]].__name__}("
                          f"{LEGACY[k][1]}=...)" for k in legacy)
        warnings.warn(f"gc.rdd's flat keywords are deprecated and will be removed: {hints}",
                      FutureWarning, stacklevel=stacklevel)
    out = []
    for kind, value in objs.items():
        if moved[kind] and value is not None and not (kind == "bandwidth"
                                                      and isinstance(value, str)):
            raise OptionError(f"{kind}= and the old keywords {sorted(moved[kind])} given "
                              f"together; put them all in {kind}=")
        obj = as_option(value, kind)
        out.append(dataclasses.replace(obj, **moved[kind]) if moved[kind] else obj)
    return out[0], out[1], out[2]


def check_cutoff(cutoff: Any) -> float:
    """A finite cutoff.

    Examples
    --------
    >>> check_cutoff(0)
    0.0
    """
    ok = isinstance(cutoff, numbers.Real) and not isinstance(cutoff, bool) and \
        bool(np.isfinite(float(cutoff)))
    if not ok:
        raise OptionError(f"cutoff={cutoff!r} must be a finite number")
    return float(cutoff)
