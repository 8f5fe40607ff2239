"""One vocabulary for every design: learner slots, shared defaults and option checks.

A leaf module (numpy, scikit-learn and :mod:`geocausal.errors` only). The tables here are the
single source of the words a user types; ``docs/vocabulary.md`` prints them
(:func:`markdown_tables`) and every face checks its options against them.

**Learner slots** are named by what the learner estimates, the same in every design:

=============  ==============================================================================
slot           estimates
=============  ==============================================================================
``outcome``    ``E[Y | X, D = d]``, the outcome regression within each treatment arm
``marginal``   ``E[Y | X]``, the outcome's mean given the covariates over both arms
``propensity`` ``E[D | X]``: the propensity score (binary D) or treatment regression
``structural`` ``E[Y - D theta | X]``, the outcome net of the effect (IV-type score)
``final``      ``tau(X)``, the CATE model fitted to pseudo-outcomes
``image_propensity`` ``P(D = 1 | images)``, the image-only placement classifier
=============  ==============================================================================

DoubleML's and econml's names are accepted as aliases where they mean the same thing in that
design (``ml_l`` is ``marginal`` in the partially linear panel model, ``ml_g`` is ``outcome``
in AIPW and ``structural`` in the panel model). A slot a design does not use is an error, never
silently ignored.

Examples
--------
>>> from sklearn.linear_model import LinearRegression
>>> sorted(resolve_learners("dml_panel", {"ml_l": LinearRegression()}))
['marginal']
>>> resolve_learners("aipw", {"outcom": LinearRegression()})
Traceback (most recent call last):
...
geocausal.errors.OptionError: aipw has no learner slot 'outcom'; its slots are 'outcome', 'propensity' (aliases: 'ml_g' -> 'outcome', 'ml_m' -> 'propensity')
>>> DEFAULTS.n_boot, DEFAULTS.alpha, DEFAULTS.clip
(999, 0.05, 0.01)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

from geocausal.errors import OptionError

T = TypeVar("T")

#: slot -> what it estimates
SLOTS: Mapping[str, str] = MappingProxyType({
    "outcome": "E[Y | X, D = d]: the outcome regression within each treatment arm",
    "marginal": "E[Y | X]: the outcome's mean given the covariates, over both arms",
    "propensity": "E[D | X]: the propensity score (binary D) or the treatment regression",
    "structural": "E[Y - D theta | X]: the outcome net of the effect (IV-type score)",
    "final": "tau(X): the CATE model fitted to pseudo-outcomes",
    "image_propensity": "P(D = 1 | images): the image-only placement classifier",
})

#: design -> the slots it uses
DESIGN_SLOTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "aipw": ("outcome", "propensity"),
    "ipw": ("propensity",),
    "balance": ("propensity",),
    "placement": ("propensity", "image_propensity"),
    "cate": ("outcome", "propensity", "final", "marginal"),
    "dml_panel": ("marginal", "propensity", "structural"),
    "debias": ("propensity",),
    "ppi": ("propensity",),
})

#: design -> {alias: slot}: DoubleML's and econml's names where they mean the same thing
ALIASES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "aipw": MappingProxyType({"ml_g": "outcome", "ml_m": "propensity"}),
    "ipw": MappingProxyType({"ml_m": "propensity"}),
    "balance": MappingProxyType({"ml_m": "propensity"}),
    "placement": MappingProxyType({"ml_m": "propensity", "image": "image_propensity"}),
    "cate": MappingProxyType({
        "ml_g": "outcome", "ml_m": "propensity", "ml_l": "marginal",
        "model_regression": "outcome", "model_propensity": "propensity",
        "model_t": "propensity", "model_y": "marginal", "model_final": "final"}),
    "dml_panel": MappingProxyType({"ml_l": "marginal", "ml_m": "propensity",
                                   "ml_g": "structural"}),
    "debias": MappingProxyType({"ml_m": "propensity"}),
    "ppi": MappingProxyType({"ml_m": "propensity"}),
})


@dataclass(frozen=True)
class Defaults:
    """The defaults every design shares.

    Attributes
    ----------
    n_boot : int
        Bootstrap (or multiplier) draws: 999, so that ``(n_boot + 1) alpha`` is an integer at
        the usual levels.
    alpha : float
        One minus the confidence level of intervals and bands.
    seed : int
        Seed of every random step.
    clip : float
        Propensities are clipped to ``[clip, 1 - clip]`` (DoubleML's default trimming
        threshold); the number clipped is reported in the diagnostics.
    folds : int
        Cross-fitting folds.
    """

    n_boot: int = 999
    alpha: float = 0.05
    seed: int = 0
    clip: float = 0.01
    folds: int = 5


#: the shared defaults
DEFAULTS = Defaults()


def _slot_list(design: str) -> str:
    slots = ", ".join(repr(s) for s in DESIGN_SLOTS[design])
    aliases = ", ".join(f"{a!r} -> {s!r}" for a, s in ALIASES.get(design, {}).items())
    return slots + (f" (aliases: {aliases})" if aliases else "")


def resolve_learners(design: str, learners: Mapping[str, Any] | None) -> dict[str, Any]:
    """Map a ``learners=`` dict onto the design's slots, resolving aliases.

    Parameters
    ----------
    design
        A key of :data:`DESIGN_SLOTS`.
    learners
        ``{slot or alias: learner}``; ``None`` or empty for the defaults. A value of ``None``
        means the design's default for that slot.

    Returns
    -------
    dict
        ``{slot: learner}`` with canonical slot names, only the slots given.

    Raises
    ------
    OptionError
        Not a dict, a slot the design does not use, or a slot given twice (name and alias).

    Examples
    --------
    >>> resolve_learners("placement", {"image": None})
    {'image_propensity': None}
    """
    if design not in DESIGN_SLOTS:
        raise OptionError(f"unknown design {design!r}; designs with learners: "
                          f"{sorted(DESIGN_SLOTS)}")
    if learners is None:
        return {}
    if not isinstance(learners, Mapping):
        raise OptionError(f"learners must be a dict {{slot: learner}}, got "
                          f"{type(learners).__name__}; {design}'s slots: {_slot_list(design)}")
    aliases = ALIASES.get(design, {})
    out: dict[str, Any] = {}
    for key, value in learners.items():
        slot = aliases.get(key, key)
        if slot not in DESIGN_SLOTS[design]:
            hint = ""
            if slot in SLOTS:
                hint = f" ({slot!r} estimates {SLOTS[slot].split(':')[0]}, which {design} does not use)"
            raise OptionError(f"{design} has no learner slot {key!r}{hint}; its slots are "
                              f"{_slot_list(design)}")
        if slot in out:
            raise OptionError(f"learner slot {slot!r} given twice (as {slot!r} and an alias)")
        out[slot] = value
    return out


def default_learners(design: str, seed: int = 0) -> dict[str, Any]:
    """The default learner of every slot of a design.

    One default per slot across designs: a standardised logistic regression for binary
    propensities; histogram gradient boosting for outcome regressions in the double-ML designs
    (``aipw``, ``dml_panel``) and least squares in ``cate`` (whose final stage is linear);
    ``final`` least squares; ``marginal`` in ``cate`` None (computed from the arm regressions).

    Parameters
    ----------
    design
        A key of :data:`DESIGN_SLOTS`.
    seed
        Seed of the learners that take one.

    Returns
    -------
    dict
        ``{slot: unfitted learner}``.

    Examples
    --------
    >>> sorted(default_learners("aipw"))
    ['outcome', 'propensity']
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    if design not in DESIGN_SLOTS:
        raise OptionError(f"unknown design {design!r}; designs with learners: "
                          f"{sorted(DESIGN_SLOTS)}")
    if design == "dml_panel":
        def boost() -> Any:
            return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1,
                                                 random_state=seed)
        return {"marginal": boost(), "propensity": boost(), "structural": boost()}
    table: dict[str, Any] = {
        "propensity": default_propensity(),
        "image_propensity": default_propensity(),
        "outcome": (LinearRegression() if design == "cate"
                    else HistGradientBoostingRegressor(max_iter=100, random_state=seed)),
        "final": LinearRegression(),
        "marginal": None,
    }
    return {s: table[s] for s in DESIGN_SLOTS[design]}


def default_propensity() -> Any:
    """The one default classifier of a binary treatment: standardised logistic regression.

    Examples
    --------
    >>> type(default_propensity()).__name__
    'Pipeline'
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def is_image_learner(obj: Any) -> bool:
    """Whether a learner takes chips rather than a feature matrix (``uses_images = True``).

    Examples
    --------
    >>> is_image_learner(object())
    False
    """
    return bool(getattr(obj, "uses_images", False))


def choice(name: str, value: Any, choices: Sequence[str], *, design: str = "",
           case: str = "lower") -> str:
    """Validate a string option and return its canonical spelling.

    Parameters
    ----------
    name
        The keyword, for the message.
    value
        What the user passed.
    choices
        The canonical spellings.
    design
        The design, for the message.
    case
        ``"lower"`` or ``"upper"``: matching ignores case and returns the canonical spelling.

    Raises
    ------
    OptionError
        Not a string or not one of ``choices``.

    Examples
    --------
    >>> choice("estimand", "ate", ESTIMANDS)
    'ATE'
    >>> choice("kernel", "gaussian", ("triangular", "uniform"), design="rdd")
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: rdd: kernel='gaussian' is not one of 'triangular', 'uniform'
    """
    where = f"{design}: " if design else ""
    if not isinstance(value, str):
        raise OptionError(f"{where}{name} must be a string, one of "
                          f"{', '.join(repr(c) for c in choices)}; got {value!r}")
    canon = {c.lower(): c for c in choices}
    key = value.lower()
    if key not in canon:
        raise OptionError(f"{where}{name}={value!r} is not one of "
                          f"{', '.join(repr(c) for c in choices)}")
    return canon[key]


#: every ``vcov=`` string geocausal accepts, with its meaning (the one list; the docs print it)
VCOV_NAMES: Mapping[str, str] = {
    "hetero": "heteroskedasticity-robust: the influence-function (sandwich) variance, "
              "normal critical values; aliases 'HC0', 'robust'",
    "iid": "homoskedastic; only where the design defines one (gc.fe), refused elsewhere",
    "delong": "DeLong's variance of AUCs (gc.placement only)",
    "bootstrap": "nonparametric bootstrap of the AUCs over units, n_boot draws (gc.placement "
                 "only)",
}

#: names other packages use, mapped by :func:`parse_vcov` to an error that points to ours
FOREIGN_VCOV: Mapping[str, str] = {
    "hc1": "HC1 is the OLS small-sample scaling n / (n - k) of statsmodels/fixest; geocausal's "
           "influence-function designs use 'hetero' (HC0, as DoubleML); gc.fe's 'hetero' "
           "already applies fixest's small-sample scaling",
    "hc2": "HC2 (leverage-weighted) is not available; use 'hetero' or {'cluster': column}",
    "hc3": "HC3 (jackknife-like) is not available; use 'hetero' or {'cluster': column}",
    "crv1": "give the cluster column: {'cluster': column} (CRV1 is geocausal's cluster variance)",
    "crv3": "CRV3 (cluster jackknife) is not available; use {'cluster': column}",
    "cluster": "give the cluster column: {'cluster': column} or {'cluster': [col1, col2]}",
    "nw": "Newey-West/HAC variances are not available; cluster by unit or by spatial block: "
          "{'cluster': column}",
    "hac": "Newey-West/HAC variances are not available; cluster by unit or by spatial block: "
           "{'cluster': column}",
}


#: estimands of the binary-treatment designs, in their canonical spelling
ESTIMANDS: tuple[str, ...] = ("ATE", "ATT", "ATC")


def check_probability(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    """A number strictly between ``low`` and ``high`` (``alpha``, ``clip``), else OptionError.

    Examples
    --------
    >>> check_probability("alpha", 0.1)
    0.1
    >>> check_probability("clip", 0.5, high=0.5)
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: clip must be a number strictly between 0.0 and 0.5, got 0.5
    """
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and low < float(value) < high)
    if not ok:
        raise OptionError(f"{name} must be a number strictly between {low} and {high}, got "
                          f"{value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """A boolean option (numpy booleans allowed), else OptionError.

    Examples
    --------
    >>> check_bool("studentize", True)
    True
    >>> check_bool("outcome_adaptive", "yes")
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: outcome_adaptive='yes' must be True or False
    """
    if not isinstance(value, bool | np.bool_):
        raise OptionError(f"{name}={value!r} must be True or False")
    return bool(value)


def check_count(name: str, value: Any, *, minimum: int = 0) -> int:
    """An integer at least ``minimum`` (``n_boot``, ``seed``, ``folds``), else OptionError.

    Examples
    --------
    >>> check_count("n_boot", 999)
    999
    >>> check_count("seed", -1)
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: seed must be an integer >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def coerce_options(cls: type[T], value: Any, keyword: str = "options") -> T:
    """An option object from itself, a dict of its fields, or None (the defaults).

    The one way every design reads its option object (``options=``, ``tweedie=``, ...).

    Raises
    ------
    OptionError
        A field the object does not have (the message lists its fields), or another type.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opts:
    ...     n_boot: int = 999
    >>> coerce_options(Opts, {"n_boot": 99}), coerce_options(Opts, None)
    (Opts(n_boot=99), Opts(n_boot=999))
    >>> coerce_options(Opts, {"nboot": 99})
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: options has no field 'nboot'; the fields of Opts are 'n_boot'
    """
    from dataclasses import fields

    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        bad = sorted(str(k) for k in set(value) - set(names))
        if bad:
            what = f"field {bad[0]!r}" if len(bad) == 1 else f"fields {bad}"
            raise OptionError(f"{keyword} has no {what}; the fields of {cls.__name__} are "
                              f"{', '.join(repr(n) for n in names)}")
        return cls(**dict(value))
    raise OptionError(f"{keyword} must be a gc.{cls.__name__}(...) or a dict of its fields, "
                      f"got {type(value).__name__}")


def markdown_tables() -> str:
    """The slot, alias and default tables as markdown (for ``docs/vocabulary.md``).

    Examples
    --------
    >>> markdown_tables().splitlines()[0]
    '### Learner slots'
    """
    lines = ["### Learner slots", "", "| slot | estimates | designs |", "|---|---|---|"]
    for slot, what in SLOTS.items():
        designs = ", ".join(f"`{d}`" for d, s in DESIGN_SLOTS.items() if slot in s)
        lines.append(f"| `{slot}` | {what.replace('|', chr(92) + '|')} | {designs} |")
    lines += ["", "### Aliases (DoubleML, econml)", "", "| design | alias | slot |",
              "|---|---|---|"]
    for design, table in ALIASES.items():
        lines += [f"| `{design}` | `{a}` | `{s}` |" for a, s in table.items()]
    lines += ["", "### Shared defaults", "", "| option | default |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in DEFAULTS.__dict__.items()]
    return "\n".join(lines) + "\n"
