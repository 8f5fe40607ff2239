"""Specification curves: one design run over a grid of analyst choices.

``spec_curve(design, formula, data, grid=...)`` runs ``design`` (``gc.aipw``, ``gc.rdd``, any
design of the flat API) once per combination of the grid's options and returns a frozen
:class:`SpecCurve`: a tidy table with one row per specification (and term), the choices as
columns, the estimate with its interval, and the failed specifications with their messages.
``SpecCurve.plot()`` draws the standard specification-curve figure (Simonsohn, Simmons and
Nelson 2020): estimates sorted with their intervals on top, the choices marked below.

The grid
--------
Each key is a keyword of the design (``trim``, ``folds``, ``learners``, ``images``, ``h``,
``kernel``, ``donut``, ...), ``"formula"`` (alternative formulas), or a parameter of ``data``
when ``data`` is a callable (data-layer choices: chip size, zone radius, manifest overrides,
``gc.load_study`` options). Each value is a list of options (labelled by their printed value)
or a dict ``{label: option}`` of labelled alternatives. Keywords that every specification
shares are passed as further keywords; ``seed`` (and ``alpha`` when the design takes it) go to
every specification, so each row equals a direct call of the design with those options.

``data`` may be a DataFrame, ``None`` (designs that take arrays, e.g. ``gc.rdd(outcome=...,
running=...)``) or a callable. The callable takes the data-layer choices as keywords and
returns a DataFrame (the design's ``data``), a :class:`~geocausal.data.study.Study` (its
``table`` as ``data`` and its ``features`` as ``images``) or a mapping of design keywords
(e.g. ``{"outcome": ..., "running": ...}``). It runs once per combination of its choices.

Failures
--------
A specification whose design (or data callable) raises a
:class:`~geocausal.errors.GeocausalError` is kept with ``status == "failed"`` and the message;
one :class:`~geocausal.errors.FailedSpecificationWarning` says how many failed. Warnings that
specifications emit are gathered and re-emitted once each with the number of specifications
that emitted them. Any other exception is a bug and propagates, naming the specification.

Dask
----
``scheduler=`` (an address or a ``dask.distributed.Client``) or ``workers=`` (a local cluster,
see :mod:`geocausal.parallel`) runs the specifications as Dask tasks; every specification runs
the same function with the same seed, so the results equal the serial run's. Each worker
process runs one specification at a time (the warnings of a specification are recorded with
Python's process-global warning filters), so use worker processes, not threads, for speed.

Examples
--------
>>> import numpy as np, pandas as pd
>>> import geocausal as gc
>>> rng = np.random.default_rng(0); n = 400
>>> df = pd.DataFrame({"x": rng.normal(size=n), "unit": np.arange(n) // 4})
>>> df["d"] = rng.normal(size=n) + df.x
>>> df["y"] = 0.5 * df.d + df.x + rng.normal(size=n)
>>> sc = spec_curve(gc.fe, data=df, grid={"formula": {"short": "y ~ d | unit",
...                                                  "long": "y ~ d + x | unit"},
...                                      "vcov": ["hetero", {"cluster": "unit"}]}, term="d")
>>> sc.table[["formula", "vcov", "term", "status"]].values.tolist()[:2]
[['short', 'hetero', 'd', 'ok'], ['short', "{'cluster': 'unit'}", 'd', 'ok']]
>>> direct = gc.fe("y ~ d + x | unit", df, vcov="hetero").params["d"]
>>> bool(sc.table.estimate[2] == direct)
True
"""

from __future__ import annotations

import inspect
import itertools
import numbers
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from geocausal.errors import DataError, DesignError, FailedSpecificationWarning, GeocausalError
from geocausal.results.estimate import Estimate, EstimateSet, FrozenMapping

__all__ = ["Choice", "SpecCurve", "expand_grid", "spec_curve"]

#: keywords of ``spec_curve`` itself that are also passed to the design when it takes them
SHARED = ("seed", "alpha")
#: longest printed value used as a label; longer options need a dict of labelled alternatives
MAX_LABEL = 40
TABLE_COLUMNS = ("term", "estimate", "std_error", "statistic", "p_value", "conf_low",
                 "conf_high", "nobs", "status", "error", "n_warnings")


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Choice:
    """One analyst choice of a grid: its name, the labels and values of its options, and
    where it goes (``"design"`` keyword, ``"formula"`` or ``"data"`` callable).
    """

    name: str
    labels: tuple[str, ...]
    values: tuple[Any, ...]
    target: str = "design"


def _label(value: Any) -> str | None:
    """The printed label of an option, or None when it has no short faithful one."""
    if value is None or isinstance(value, (bool, str, numbers.Number)):
        text = str(value)
    elif isinstance(value, (list, tuple, dict)) and all(
            v is None or isinstance(v, (bool, str, numbers.Number))
            for v in (value.values() if isinstance(value, dict) else value)):
        text = str(value)
    else:
        return None
    return text if len(text) <= MAX_LABEL else None


def _options(name: str, spec: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    if isinstance(spec, Mapping):
        labels = tuple(spec)
        if not all(isinstance(k, str) and k for k in labels):
            raise DesignError(f"grid[{name!r}]: the labels of labelled alternatives must be "
                              f"non-empty strings, got {list(labels)!r}")
        values = tuple(spec.values())
    elif isinstance(spec, (list, tuple)):
        values = tuple(spec)
        labels = tuple(_label(v) for v in values)
        bad = [i for i, lab in enumerate(labels) if lab is None]
        if bad:
            raise DesignError(
                f"grid[{name!r}]: option {bad[0]} ({type(values[bad[0]]).__name__}) has no short "
                f"printed label; give labelled alternatives as a dict, e.g. "
                f"{{{name!r}: {{'a': option_a, 'b': option_b}}}}")
    else:
        raise DesignError(f"grid[{name!r}] must be a list of options or a dict of labelled "
                          f"alternatives, got {type(spec).__name__}")
    if not values:
        raise DesignError(f"grid[{name!r}] has no options; give at least one")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise DesignError(f"grid[{name!r}]: options {dup} are listed twice (or print alike); "
                          "give distinct options or a dict of labelled alternatives")
    return labels, values


def _params(fn: Callable) -> tuple[set[str], bool]:
    """Keyword names ``fn`` accepts, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DesignError(f"cannot read the keywords of {fn!r} ({exc}); give a design "
                          "function such as gc.aipw") from None
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _design_name(design: Callable) -> str:
    return getattr(design, "__name__", type(design).__name__)


def expand_grid(grid: Mapping[str, Any], design: Callable,
                data: Any = None) -> tuple[tuple[Choice, ...], list[tuple[int, ...]]]:
    """Check a grid against the design (and a data callable) and list its specifications.

    Parameters
    ----------
    grid
        ``{choice: [options]}`` or ``{choice: {label: option}}``.
    design
        The design function; every key must be one of its keywords, ``"formula"``, or a
        parameter of ``data`` when that is a callable.
    data
        The ``data`` of :func:`spec_curve`.

    Returns
    -------
    choices, specs
        The choices in grid order, and one tuple of option indices per specification (the
        first choice varies slowest).

    Raises
    ------
    DesignError
        The grid is empty or not a mapping, a key is unknown (the message lists the design's
        keywords), a key could go to both the design and the data callable, or options are
        empty, duplicated or unlabelled.

    Examples
    --------
    >>> import geocausal as gc
    >>> choices, specs = expand_grid({"trim": [None, 0.05], "folds": [2, 5]}, gc.aipw)
    >>> [c.labels for c in choices], specs
    ([('None', '0.05'), ('2', '5')], [(0, 0), (0, 1), (1, 0), (1, 1)])
    """
    if not isinstance(grid, Mapping):
        raise DesignError(f"grid must be a dict of {{keyword: options}}, got "
                          f"{type(grid).__name__}")
    if not grid:
        raise DesignError("grid is empty: give at least one choice, e.g. "
                          "grid={'trim': [None, 0.05]}")
    dnames, dvar = _params(design)
    dnames -= {"data"}
    cnames, cvar = _params(data) if callable(data) and not isinstance(data, pd.DataFrame) \
        else (set(), False)
    choices = []
    for name, spec in grid.items():
        if not isinstance(name, str):
            raise DesignError(f"grid keys must be keyword names, got {name!r}")
        if name == "data":
            raise DesignError("grid['data']: vary the study table through a callable data= "
                              "whose parameters are the data-layer choices")
        in_design = name in dnames or (dvar and name not in cnames)
        in_data = name in cnames or (cvar and not in_design)
        if name in dnames and name in cnames:
            raise DesignError(f"grid[{name!r}] is a keyword of {_design_name(design)} and a "
                              "parameter of the data callable; rename the data callable's "
                              "parameter")
        if not (in_design or in_data):
            import difflib

            known = sorted(dnames | cnames)
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DesignError(f"grid[{name!r}] is not a keyword of {_design_name(design)}"
                              f"{' or of the data callable' if cnames else ''}{hint}; "
                              f"keywords: {', '.join(known)}")
        labels, values = _options(name, spec)
        target = "formula" if name == "formula" else ("data" if in_data else "design")
        choices.append(Choice(name, labels, values, target))
    specs = list(itertools.product(*(range(len(c.values)) for c in choices)))
    return tuple(choices), specs


# ----------------------------------------------------------------------------- running
@dataclass(frozen=True)
class _Outcome:
    estimate: Estimate | None
    error: str | None
    warnings: tuple[tuple[type, str], ...] = ()
    fatal: str | None = None


#: one specification at a time per process: Python's warnings filters are process-global, so
#: recording each specification's warnings needs them not to interleave (threaded Dask workers)
_RECORD_LOCK = threading.RLock()


@contextmanager
def _recording():
    with _RECORD_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _materialise(data: Any, kwargs: Mapping[str, Any]) -> _Outcome | dict[str, Any]:
    """Call the data callable with its choices; a mapping of design keywords, or a failure."""
    with _recording() as caught:
        try:
            out = data(**kwargs)
        except GeocausalError as exc:
            return _Outcome(None, f"{type(exc).__name__} (data): {exc}",
                            tuple((w.category, str(w.message)) for w in caught))
    recorded = tuple((w.category, str(w.message)) for w in caught)
    if isinstance(out, pd.DataFrame):
        inputs = {"data": out}
    elif hasattr(out, "table") and hasattr(out, "features"):  # a geocausal Study
        inputs = {"data": out.table}
        if out.features is not None and out.features.shape[1] > 0:
            inputs["images"] = out.features
    elif isinstance(out, Mapping):
        inputs = dict(out)
    else:
        return _Outcome(None, None, recorded,
                        fatal=f"the data callable returned {type(out).__name__}; return a "
                              "DataFrame, a Study or a dict of design keywords")
    return {"inputs": inputs, "warnings": recorded}


def _run_spec(design: Callable, formula: Any, data: Any, kwargs: Mapping[str, Any],
              label: str) -> _Outcome:
    """Run one specification; GeocausalErrors become failures, warnings are recorded."""
    if isinstance(data, _Outcome):  # the data callable failed for this combination
        return data
    if isinstance(data, dict) and "inputs" in data:
        inputs, pre = dict(data["inputs"]), data["warnings"]
        clash = sorted(set(inputs) & (set(kwargs) | {"formula"}))
        if clash:
            return _Outcome(None, None, pre, fatal=f"the data callable returned {clash}, which "
                            "the grid or the fixed keywords also set; set each keyword once")
        data = inputs.pop("data", None)
        kwargs = {**kwargs, **inputs}
    else:
        pre = ()
    args = () if formula is None and data is None else (formula, data)
    with _recording() as caught:
        try:
            est = design(*args, **kwargs)
        except GeocausalError as exc:
            return _Outcome(None, f"{type(exc).__name__}: {exc}",
                            pre + tuple((w.category, str(w.message)) for w in caught))
        except Exception as exc:
            exc.add_note(f"in specification {label} of the specification curve")
            raise
    recorded = pre + tuple((w.category, str(w.message)) for w in caught)
    if not isinstance(est, Estimate):
        return _Outcome(None, None, recorded,
                        fatal=f"{_design_name(design)} returned {type(est).__name__}, not an "
                              "Estimate; spec_curve runs designs such as gc.aipw or gc.rdd")
    return _Outcome(est, None, recorded)


def _client(scheduler: Any, workers: int | None):
    from geocausal.parallel import dask_client

    if scheduler is not None and hasattr(scheduler, "submit"):  # a Client the caller owns
        @contextmanager
        def given():
            yield scheduler
        return given()
    return dask_client(address=scheduler, workers=workers)


def _execute(design, jobs, data, data_jobs, scheduler, workers) -> list[_Outcome]:
    """Run every job serially or on Dask; ``jobs`` are (formula, data_key, kwargs, label)."""
    from geocausal._progress import progress

    with _client(scheduler, workers) as client:
        if client is None:
            cache: dict = {}
            out = []
            for formula, key, kw, label in progress(jobs, desc="specifications"):
                if key not in cache:
                    cache[key] = _materialise(data, data_jobs[key]) if key is not None else data
                out.append(_run_spec(design, formula, cache[key], kw, label))
            return out
        if key_futures := {k: client.submit(_materialise, data, kw, pure=False)
                           for k, kw in data_jobs.items()}:
            source = key_futures
        else:
            source = {None: client.scatter(data) if data is not None else None}
        futures = [client.submit(_run_spec, design, formula, source[key], kw, label, pure=False)
                   for formula, key, kw, label in jobs]
        return client.gather(futures)


def _check_term(term: Any) -> tuple[str, ...] | None:
    if term is None:
        return None
    terms = (term,) if isinstance(term, str) else tuple(term) if isinstance(
        term, (list, tuple)) else None
    if not terms or not all(isinstance(t, str) and t for t in terms):
        raise DataError(f"term={term!r}: give a term name (or a list of them), e.g. term='d'")
    return terms


def spec_curve(design: Callable[..., Estimate], formula: str | None = None, data: Any = None, *,
               grid: Mapping[str, Any], term: str | Sequence[str] | None = None,
               seed: int = 0, alpha: float = 0.05, scheduler: Any = None,
               workers: int | None = None, **fixed: Any) -> SpecCurve:
    """Run ``design`` over every combination of the analyst choices in ``grid``.

    Parameters
    ----------
    design
        A design function of the flat API (``gc.aipw``, ``gc.ipw``, ``gc.fe``, ``gc.cate``,
        ``gc.dml_panel``, ``gc.debias``, ``gc.rdd``, ...).
    formula
        The design's formula, or ``None`` when the grid varies ``"formula"`` or the design
        takes none (``gc.rdd`` on distributions).
    data
        A DataFrame, ``None``, or a callable of the data-layer choices returning a DataFrame,
        a Study or a dict of design keywords (see the module notes).
    grid
        ``{choice: [options]}`` or ``{choice: {label: option}}`` (labelled alternatives).
    term
        The term(s) reported; default the estimate's only term (a DesignError lists the terms
        when it has several).
    seed
        Passed to every specification (and so to every random step of the design).
    alpha
        Level of the intervals (``1 - alpha``); also passed to designs that take ``alpha``.
    scheduler, workers
        A Dask scheduler address or Client, or a number of local worker processes
        (:func:`geocausal.parallel.dask_client`); default serial.
    **fixed
        Keywords of the design shared by every specification (``learners=``, ``n_boot=``...).

    Returns
    -------
    SpecCurve

    Raises
    ------
    DesignError
        A bad grid (see :func:`expand_grid`), a fixed keyword the design does not take or that
        the grid also sets, a term that no specification estimates.
    DataError
        ``data`` is neither a DataFrame, None nor a callable; a bad ``term`` or ``alpha``.

    Warns
    -----
    FailedSpecificationWarning
        When specifications failed, with their count.
    """
    if not callable(design):
        raise DesignError(f"design must be a design function such as gc.aipw, got "
                          f"{type(design).__name__}")
    if not (data is None or isinstance(data, pd.DataFrame) or callable(data)):
        raise DataError(f"data must be a DataFrame, None or a callable of the data-layer "
                        f"choices, got {type(data).__name__}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise DataError(f"alpha={alpha!r}: give a number in (0, 1), e.g. 0.05")
    terms = _check_term(term)
    choices, specs = expand_grid(grid, design, data)
    by_target = {t: [c.name for c in choices if c.target == t]
                 for t in ("design", "formula", "data")}
    if by_target["formula"] and formula is not None:
        raise DesignError("the grid varies 'formula' and a formula was given too; give the "
                          "formulas in the grid only")
    dnames, dvar = _params(design)
    unknown = sorted(k for k in fixed if k not in dnames and not dvar)
    if unknown:
        raise DesignError(f"{unknown} are not keywords of {_design_name(design)} (nor of "
                          "spec_curve); check the spelling")
    twice = sorted(set(fixed) & set(grid))
    if twice:
        raise DesignError(f"{twice} are set both in the grid and as fixed keywords; set each "
                          "once")
    shared = {k: v for k, v in (("seed", seed), ("alpha", alpha))
              if (k in dnames or dvar) and k not in grid}
    callable_data = callable(data) and not isinstance(data, pd.DataFrame)
    jobs, data_jobs, labels = [], {}, []
    for idx in specs:
        picked = {c.name: (c.labels[i], c.values[i]) for c, i in zip(choices, idx)}
        label = ", ".join(f"{k}={lab}" for k, (lab, _) in picked.items())
        kw = {**shared, **fixed, **{k: picked[k][1] for k in by_target["design"]}}
        f = picked["formula"][1] if by_target["formula"] else formula
        key = None
        if callable_data:
            key = tuple(idx[i] for i, c in enumerate(choices) if c.target == "data")
            data_jobs.setdefault(key, {k: picked[k][1] for k in by_target["data"]})
        jobs.append((f, key, kw, label))
        labels.append({k: lab for k, (lab, _) in picked.items()})
    outcomes = _execute(design, jobs, data, data_jobs, scheduler, workers)
    fatal = next((o.fatal for o in outcomes if o.fatal), None)
    if fatal:
        raise DesignError(fatal)
    return _collect(design, choices, labels, outcomes, terms, alpha)


def _collect(design, choices, labels, outcomes, terms, alpha) -> SpecCurve:
    ok = [o.estimate for o in outcomes if o.estimate is not None]
    if terms is None and ok:
        many = next((e for e in ok if len(e.params) != 1), None)
        if many is not None:
            raise DesignError(f"the estimates have several terms {list(many.params.index)}; "
                              "choose with term=, e.g. term="
                              f"{str(many.params.index[0])!r}")
        names = {str(e.params.index[0]) for e in ok}
        if len(names) == 1:  # failed specifications are reported under the same term
            terms = (names.pop(),)
    if terms is not None and ok and not any(t in e.params.index for e in ok for t in terms):
        raise DesignError(f"term={list(terms)} is not a term of any specification's estimate; "
                          f"terms: {list(ok[0].params.index)}")
    rows, nulls = [], {}
    for i, (lab, o) in enumerate(zip(labels, outcomes)):
        base = {"spec": i, **lab, "n_warnings": len(o.warnings)}
        if o.estimate is None:
            for t in terms or ("",):
                rows.append({**base, "term": t, "status": "failed", "error": o.error})
            continue
        tidy = o.estimate.tidy(alpha).set_index("term")
        for t in terms or tuple(o.estimate.params.index.astype(str)):
            if t not in tidy.index:
                rows.append({**base, "term": t, "status": "failed",
                             "error": f"term {t!r} is not among this estimate's terms "
                                      f"{list(tidy.index)}"})
                continue
            nulls.setdefault(t, float(o.estimate.null[t]))
            rows.append({**base, "term": t, **tidy.loc[t].to_dict(), "nobs": o.estimate.nobs,
                         "status": "ok", "error": ""})
    cols = ["spec", *[c.name for c in choices], *TABLE_COLUMNS]
    table = pd.DataFrame(rows).reindex(columns=cols)
    table["nobs"] = table["nobs"].astype("Int64")
    table["error"] = table["error"].fillna("")
    table["n_warnings"] = table["n_warnings"].astype(int)
    _reemit(outcomes)
    failed = [i for i, o in enumerate(outcomes) if o.estimate is None]
    if failed:
        first = "; ".join(f"spec {i}: {outcomes[i].error}" for i in failed[:3])
        warnings.warn(f"{len(failed)} of {len(outcomes)} specifications failed and are kept "
                      f"with status 'failed' (first: {first})", FailedSpecificationWarning,
                      stacklevel=3)
    return SpecCurve(table=table, estimates=tuple(o.estimate for o in outcomes),
                     choices={c.name: c.labels for c in choices}, design=_design_name(design),
                     alpha=float(alpha), nulls=nulls)


def _reemit(outcomes: Sequence[_Outcome]) -> None:
    """Re-emit each distinct warning of the specifications once, with how many emitted it."""
    seen: dict[tuple[type, str], list[int]] = {}
    for i, o in enumerate(outcomes):
        for w in dict.fromkeys(o.warnings):
            seen.setdefault(w, []).append(i)
    for (cat, msg), specs in seen.items():
        text = (f"{msg} [in {len(specs)} of {len(outcomes)} specifications: "
                f"{', '.join(map(str, specs[:5]))}{', ...' if len(specs) > 5 else ''}]")
        try:
            warnings.warn(text, cat, stacklevel=4)
        except Exception:  # noqa: BLE001 - a category whose constructor needs other arguments
            warnings.warn(f"{cat.__name__}: {text}", UserWarning, stacklevel=4)


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SpecCurve:
    """A specification curve: one row per specification and term.

    Attributes
    ----------
    table : pandas.DataFrame
        ``spec`` (index in grid order), one column per choice (the option's label), ``term``,
        ``estimate``, ``std_error``, ``statistic``, ``p_value``, ``conf_low``, ``conf_high``,
        ``nobs``, ``status`` (``"ok"`` or ``"failed"``), ``error`` (the failure's message) and
        ``n_warnings``.
    estimates : tuple
        The Estimate of each specification (``None`` where it failed), in ``spec`` order.
    choices : Mapping
        ``{choice: labels}`` in grid order.
    design : str
        The design's name.
    alpha : float
        The intervals are ``1 - alpha`` intervals.
    nulls : Mapping
        The null value of each term (the reference line of the figure).
    """

    table: pd.DataFrame
    estimates: tuple[Estimate | None, ...]
    choices: Mapping[str, tuple[str, ...]]
    design: str = ""
    alpha: float = 0.05
    nulls: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", self.table.copy())
        object.__setattr__(self, "estimates", tuple(self.estimates))
        object.__setattr__(self, "choices", FrozenMapping(
            {k: tuple(v) for k, v in self.choices.items()}))
        object.__setattr__(self, "nulls", FrozenMapping(dict(self.nulls)))

    @property
    def n_specs(self) -> int:
        """Number of specifications."""
        return len(self.estimates)

    @property
    def n_failed(self) -> int:
        """Number of failed specifications."""
        return sum(e is None for e in self.estimates)

    def tidy(self) -> pd.DataFrame:
        """A copy of the table."""
        return self.table.copy()

    def summary(self) -> pd.DataFrame:
        """Per term: specifications run and failed, median, min and max estimate, the share of
        positive estimates and the shares whose interval excludes the null on each side.
        """
        rows = []
        for t, g in self.table.groupby("term", sort=False):
            ok = g[g.status == "ok"]
            null = self.nulls.get(t, 0.0)
            n = max(len(ok), 1)
            rows.append({"term": t, "n_specs": len(g), "n_failed": int((g.status != "ok").sum()),
                         "median": ok.estimate.median(), "min": ok.estimate.min(),
                         "max": ok.estimate.max(), "share_positive": (ok.estimate > null).sum() / n,
                         "share_significant_positive": (ok.conf_low > null).sum() / n,
                         "share_significant_negative": (ok.conf_high < null).sum() / n})
        return pd.DataFrame(rows)

    def estimate_set(self) -> EstimateSet:
        """The successful specifications as an :class:`EstimateSet` named by their choices."""
        names, ests = [], []
        for i, e in enumerate(self.estimates):
            if e is not None:
                row = self.table[self.table.spec == i].iloc[0]
                names.append(", ".join(f"{c}={row[c]}" for c in self.choices))
                ests.append(e)
        return EstimateSet(tuple(ests), tuple(names))

    def plot(self, term: str | None = None, **kwargs: Any):
        """The specification-curve figure (:func:`geocausal.results.plot_speccurve.
        spec_curve_plot`); returns the Figure.
        """
        from geocausal.results.plot_speccurve import spec_curve_plot

        return spec_curve_plot(self, term=term, **kwargs)

    def __repr__(self) -> str:
        head = (f"Specification curve of {self.design}: {self.n_specs} specifications "
                f"({self.n_failed} failed) over {', '.join(self.choices)}")
        return head + "\n" + self.summary().to_string(index=False)
