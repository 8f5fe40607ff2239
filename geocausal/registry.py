"""The one registry of designs, public helpers and option objects.

Every estimator and helper a user reaches as ``gc.<name>`` is listed here once, with the
function behind it, its family, a one-line description and, for designs, the command-line
roles ``geocausal estimate`` passes to it. Three things read this table and nothing else:

- ``geocausal/__init__.py`` (the lazy ``gc.*`` names; importing this module imports no
  estimator),
- the command line (:data:`geocausal.cli.DESIGNS`, the designs of ``geocausal estimate``),
- the docs (:func:`markdown_table`, the generated table in ``docs/vocabulary.md``; refresh it
  with ``python -c "from geocausal.registry import write_docs; write_docs('docs/vocabulary.md')"``).

Examples
--------
>>> from geocausal.registry import DESIGNS, get
>>> get("rdd").family, get("rdd").roles
('regression discontinuity', ('running', 'cutoff', 'by'))
>>> sorted(n for n, e in DESIGNS.items() if e.cli)[:3]
['aipw', 'cate', 'debias']
>>> get("transport_cate").load().__name__
'transport_cate'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from geocausal.errors import DesignError

Kind = Literal["design", "helper", "option"]

#: command-line role -> (flag, help); a design lists the roles it takes in ``roles``
ROLES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "unit": ("--unit COLUMN", "unit id column (panels)"),
    "time": ("--time COLUMN", "time column (panels)"),
    "running": ("--running COLUMN", "running variable (rdd)"),
    "cutoff": ("--cutoff VALUE", "cutoff of the running variable (rdd)"),
    "by": ("--by COLUMN[,COLUMN]", "subgroup column(s)"),
    "folds": ("--folds K", "cross-fitting folds"),
    "calibration": ("--calibration FILE",
                    "held-out predictions and truths, CSV or Parquet (debias)"),
    "truth": ("--truth COLUMN", "column of labels, missing where unlabelled (ppi); the truth "
                                "column of the calibration file (debias); the true CATE (cate)"),
})


@dataclass(frozen=True)
class Entry:
    """One public name: a design (a formula face) or a helper.

    Attributes
    ----------
    name : str
        The name under ``gc.`` (and ``geocausal estimate --design`` for CLI designs).
    target : str
        ``"module:function"`` of the function behind it.
    family : str
        The group it belongs to in the docs.
    description : str
        One line.
    kind : {"design", "helper"}
        A design takes ``(formula, data, ...)`` and returns an Estimate; a helper anything else.
    roles : tuple of str
        Keys of :data:`ROLES` the command line may pass to a design.
    cli : bool
        Whether ``geocausal estimate --design NAME`` runs it.
    options : tuple of (str, str)
        A design's option objects: ``(keyword, option name)``, e.g. ``("inference",
        "Inference")`` for ``gc.rdd(inference=gc.Inference(...))``; the command line routes
        ``--set FIELD=VALUE`` of such an object into its keyword.
    """

    name: str
    target: str
    family: str
    description: str
    kind: Kind = "design"
    roles: tuple[str, ...] = ()
    cli: bool = False
    options: tuple[tuple[str, str], ...] = ()

    @property
    def module(self) -> str:
        """The module holding the function."""
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        """The function's name in its module."""
        return self.target.partition(":")[2]

    def load(self) -> Callable[..., Any]:
        """Import and return the function (the first use imports its module)."""
        return getattr(importlib.import_module(self.module), self.attribute)


def _d(name: str, target: str, family: str, description: str, roles: tuple[str, ...] = (),
       cli: bool = True, options: tuple[tuple[str, str], ...] = ()) -> Entry:
    return Entry(name, target, family, description, "design", roles, cli, options)


def _h(name: str, target: str, family: str, description: str) -> Entry:
    return Entry(name, target, family, description, "helper")


def _o(name: str, target: str, family: str, description: str) -> Entry:
    return Entry(name, target, family, description, "option")


_AVG = "average effects"
_HET = "heterogeneous effects"
_PANEL = "panels"
_PRED = "predicted outcomes"
_RD = "regression discontinuity"

_ENTRIES: tuple[Entry, ...] = (
    _d("ipw", "geocausal.api.ipw:ipw", _AVG,
       "inverse probability weighting with image confounders", ("by", "folds"),
       options=(("options", "IPWOptions"),)),
    _d("aipw", "geocausal.api.ipw:aipw", _AVG,
       "augmented IPW (doubly robust) with image confounders", ("by", "folds"),
       options=(("options", "IPWOptions"),)),
    _d("placement", "geocausal.api.placement:placement", _AVG,
       "where treatment is placed: AUC of the propensity from images", ("by", "folds")),
    _d("fe", "geocausal.api.fe:fe", _PANEL,
       "linear fixed-effects regression (one- or two-way)", ("unit", "time")),
    _d("cate", "geocausal.api.cate:cate", _HET,
       "conditional average treatment effects (meta-learners), BLP, GATES, RATE",
       ("folds", "truth"), options=(("options", "CateOptions"),)),
    _d("dml_panel", "geocausal.api.dml_panel:dml_panel", _PANEL,
       "double machine learning for panels (partially linear, CRE)",
       ("unit", "time", "folds"), options=(("options", "PanelOptions"),)),
    _d("debias", "geocausal.api.debias:debias", _PRED,
       "average effect on an ML-predicted outcome, corrected with a calibration sample",
       ("folds", "calibration", "truth"), options=(("tweedie", "TweedieOptions"),)),
    _d("ppi", "geocausal.api.ppi:ppi", _PRED,
       "prediction-powered inference: mean, OLS or ATE from predictions plus a few labels",
       ("folds", "truth")),
    _d("rdd", "geocausal.api.rdd:rdd", _RD,
       "regression discontinuity, scalar or distribution-valued (R3D) outcomes",
       ("running", "cutoff", "by"),
       options=(("bandwidth", "Bandwidth"), ("inference", "Inference"), ("checks", "Checks"))),
    # designs without a command-line face (they take more than a formula and a table)
    _d("balance", "geocausal.api.ipw:balance", _AVG,
       "covariate balance before and after weighting", cli=False),
    _d("compare_debiasers", "geocausal.api.debias:compare_debiasers", _PRED,
       "pseudo-trials comparing debiasing methods on a calibration sample", cli=False),
    _d("compare_representations", "geocausal.api.cate:compare_representations", _HET,
       "fit gc.cate once per image representation and compare them in one table", cli=False),
    # helpers users need
    _h("effect", "geocausal.api.cate:effect", _HET,
       "CATE of new units (new chips, new places) from a fitted gc.cate"),
    _h("predict_cate", "geocausal.api.cate:predict_cate", _HET,
       "CATE predictions of a fitted gc.cate on a feature matrix"),
    _h("transport_cate", "geocausal.api.transport:transport_cate", _HET,
       "predict a fitted CATE on every window of a raster mosaic, write a GeoTIFF"),
    _h("landcover_fractions", "geocausal.api.landcover:landcover_fractions", _HET,
       "land-cover class fractions per unit (from a class band or clustering)"),
    _h("cate_landcover", "geocausal.api.landcover:cate_landcover", _HET,
       "regress predicted CATE on land-cover fractions"),
    _h("fit_corrector", "geocausal.api.debias:fit_corrector", _PRED,
       "fit a Tweedie or LCC corrector on held-out predictions and truths"),
    _h("signed_distance", "geocausal.api.rdd_geo:signed_distance", _RD,
       "signed distance of units to a boundary (a geographic running variable)"),
    _h("outcome_quantiles", "geocausal.api.rdd:outcome_quantiles", _RD,
       "quantiles of distribution-valued outcomes on a grid"),
    _h("sensitivity_benchmark", "geocausal.api.sensitivity:sensitivity_benchmark", _AVG,
       "benchmark omitted-confounder bounds against observed covariates"),
    # option objects (frozen dataclasses; every design also takes a plain dict of their fields)
    _o("Folds", "geocausal.folds:Folds", "all designs",
       "cross-fitting folds: random, grouped, spatial blocks or time blocks (folds=)"),
    _o("IPWOptions", "geocausal.designs.ipw:IPWOptions", _AVG,
       "image representation and weighting options of gc.ipw / gc.aipw / gc.balance (options=)"),
    _o("CateOptions", "geocausal.designs.cate:CateOptions", _HET,
       "evaluation options of gc.cate: splits, groups, bootstrap, CLAN (options=)"),
    _o("PanelOptions", "geocausal.designs.dml_panel:PanelOptions", _PANEL,
       "treatments, time effects, cross-fitting and repetitions of gc.dml_panel (options=)"),
    _o("TweedieOptions", "geocausal.designs.debias:TweedieOptions", _PRED,
       "bandwidth, derivative and score sample of the Tweedie correction (tweedie=)"),
    _o("Bandwidth", "geocausal.designs.rdd.options:Bandwidth", _RD,
       "local polynomial and bandwidth options of gc.rdd (bandwidth=)"),
    _o("Inference", "geocausal.designs.rdd.options:Inference", _RD,
       "bootstrap bands, residuals and tests of gc.rdd (inference=)"),
    _o("Checks", "geocausal.designs.rdd.options:Checks", _RD,
       "density test, placebo cutoffs, bandwidth and donut sensitivity of gc.rdd (checks=)"),
)

#: name -> entry, designs and helpers
REGISTRY: Mapping[str, Entry] = MappingProxyType({e.name: e for e in _ENTRIES})
#: name -> entry, designs only
DESIGNS: Mapping[str, Entry] = MappingProxyType(
    {e.name: e for e in _ENTRIES if e.kind == "design"})
#: name -> entry, helpers only
HELPERS: Mapping[str, Entry] = MappingProxyType(
    {e.name: e for e in _ENTRIES if e.kind == "helper"})
#: name -> entry, option objects only
OPTIONS: Mapping[str, Entry] = MappingProxyType(
    {e.name: e for e in _ENTRIES if e.kind == "option"})
#: designs run by ``geocausal estimate --design NAME``
CLI_DESIGNS: tuple[str, ...] = tuple(e.name for e in _ENTRIES if e.cli)


def get(name: str) -> Entry:
    """The registry entry of ``name``.

    Raises
    ------
    DesignError
        When ``name`` is not registered (the message lists the names).

    Examples
    --------
    >>> get("aipw").target
    'geocausal.api.ipw:aipw'
    >>> get("iv")
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: unknown design or helper 'iv'; choose one of ['Bandwidth', 'CateOptions', 'Checks', 'Folds', 'IPWOptions', 'Inference', 'PanelOptions', 'TweedieOptions', 'aipw', 'balance', 'cate', 'cate_landcover', 'compare_debiasers', 'compare_representations', 'debias', 'dml_panel', 'effect', 'fe', 'fit_corrector', 'ipw', 'landcover_fractions', 'outcome_quantiles', 'placement', 'ppi', 'predict_cate', 'rdd', 'sensitivity_benchmark', 'signed_distance', 'transport_cate']
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise DesignError(f"unknown design or helper {name!r}; choose one of "
                          f"{sorted(REGISTRY)}") from None


def lazy_names() -> dict[str, str]:
    """``gc.<name>`` -> module, for ``geocausal.__init__``'s lazy imports.

    Examples
    --------
    >>> lazy_names()["ppi"]
    'geocausal.api.ppi'
    """
    return {e.name: e.module for e in _ENTRIES}


def option_class(name: str) -> type:
    """The option class registered as ``name`` (imported on first use).

    Examples
    --------
    >>> option_class("Inference").__name__
    'Inference'
    """
    entry = OPTIONS.get(name)
    if entry is None:
        raise DesignError(f"unknown option object {name!r}; choose one of {sorted(OPTIONS)}")
    return entry.load()  # type: ignore[return-value]


def option_fields(design: str) -> dict[str, tuple[str, ...]]:
    """Keyword -> the field names of each option object a design takes.

    The command line moves ``--set FIELD=VALUE`` into the keyword whose object has that field.

    Examples
    --------
    >>> sorted(option_fields("rdd"))
    ['bandwidth', 'checks', 'inference']
    >>> "n_boot" in option_fields("rdd")["inference"]
    True
    """
    from dataclasses import fields

    return {kw: tuple(f.name for f in fields(option_class(cls)))
            for kw, cls in get(design).options}


def options_markdown() -> str:
    """The option objects, their fields and defaults, as markdown (``docs/vocabulary.md``).

    Examples
    --------
    >>> options_markdown().splitlines()[0]
    '| Option object | Keyword of | Field | Default |'
    """
    from dataclasses import MISSING, fields

    takers: dict[str, list[str]] = {}
    for e in _ENTRIES:
        for kw, cls in e.options:
            takers.setdefault(cls, []).append(f"`gc.{e.name}({kw}=)`")
    rows = ["| Option object | Keyword of | Field | Default |", "|---|---|---|---|"]
    for name in OPTIONS:
        where = ", ".join(takers.get(name, [])) or "`folds=` of every cross-fitted design"
        for j, f in enumerate(fields(option_class(name))):
            default = ("(required)" if f.default is MISSING and f.default_factory is MISSING
                       else repr(f.default) if f.default is not MISSING else "(factory)")
            rows.append(f"| {f'`gc.{name}`' if j == 0 else ''} | {where if j == 0 else ''} | "
                        f"`{f.name}` | `{default}` |")
    return "\n".join(rows) + "\n"


def vocabulary_markdown() -> str:
    """Learner slots, aliases, shared defaults, folds, ``vcov=`` names and option objects: the
    generated part of ``docs/vocabulary.md``.

    Examples
    --------
    >>> "### Learner slots" in vocabulary_markdown()
    True
    """
    from geocausal import vocabulary
    from geocausal.folds import FOLD_KINDS
    from geocausal.vocabulary import FOREIGN_VCOV, VCOV_NAMES

    lines = [vocabulary.markdown_tables(), "### Folds (`folds=` of every cross-fitted design)", "",
             "| Kind | How to ask |", "|---|---|", "| random | `folds=5` (stratified by a binary "
             "treatment) or `gc.Folds(k=5)` |"]
    asks = {"group": "`gc.Folds.group(\"village\", k=5)`",
            "spatial": "`gc.Folds.spatial((\"lon\", \"lat\"), k=5, block_size=0.5)`",
            "time": "`gc.Folds.time(\"year\", k=5, gap=1)`"}
    lines += [f"| {k} | {asks[k]} |" for k in FOLD_KINDS if k != "random"]
    lines += ["| given | an array of fold ids, one per row |", "",
              "### `vcov=` names", "", "| Value | Meaning |", "|---|---|"]
    lines += [f"| `{k!r}` | {v} |" for k, v in VCOV_NAMES.items()]
    lines += ["| `{'cluster': col}` / `{'cluster': [col1, col2]}` | one- or two-way "
              "cluster-robust, t(G - 1) critical values |", "",
              "Names from other packages:", "", "| Value | geocausal says |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in FOREIGN_VCOV.items()]
    lines += ["", "### Option objects", "", options_markdown()]
    return "\n".join(lines)


def cli_designs() -> dict[str, str]:
    """Design name -> ``"module:function"`` for ``geocausal estimate``.

    Examples
    --------
    >>> cli_designs()["debias"]
    'geocausal.api.debias:debias'
    """
    return {name: REGISTRY[name].target for name in CLI_DESIGNS}


def markdown_table() -> str:
    """The docs table of designs and helpers (``docs/vocabulary.md`` holds its output).

    Examples
    --------
    >>> print(markdown_table().splitlines()[0])
    | Name | Kind | Family | What it does | Command line |
    """
    rows = ["| Name | Kind | Family | What it does | Command line |", "|---|---|---|---|---|"]
    for e in sorted(_ENTRIES, key=lambda e: (e.kind, e.family, e.name)):
        if e.cli:
            flags = ", ".join(f"`{ROLES[r][0]}`" for r in e.roles)
            cli = f"`--design {e.name}`" + (f" ({flags})" if flags else "")
        else:
            cli = "-"
        rows.append(f"| `gc.{e.name}` | {e.kind} | {e.family} | {e.description} | {cli} |")
    return "\n".join(rows) + "\n"


#: markers around the generated table in ``docs/vocabulary.md``
DOCS_BEGIN = ("<!-- registry table: generated by geocausal.registry.write_docs('docs/vocabulary.md'); "
              "do not edit -->")
DOCS_END = "<!-- end of registry table -->"


#: markers around the generated vocabulary tables in ``docs/vocabulary.md``
VOCAB_BEGIN = ("<!-- vocabulary tables: generated by geocausal.registry.write_docs("
               "'docs/vocabulary.md'); do not edit -->")
VOCAB_END = "<!-- end of vocabulary tables -->"


def _between(text: str, begin: str, end: str, body: str, path: str) -> str:
    if begin not in text or end not in text:
        raise DesignError(f"'{path}' lacks the markers {begin!r} ... {end!r}; add them where "
                          "the generated text goes")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n\n{body}\n{end}{rest.split(end, 1)[1]}"


def write_docs(path: str) -> bool:
    """Rewrite the generated tables between the markers of ``path``; True when it changed."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    new = _between(text, DOCS_BEGIN, DOCS_END, markdown_table(), path)
    new = _between(new, VOCAB_BEGIN, VOCAB_END, vocabulary_markdown(), path)
    if new != text:
        p.write_text(new)
    return new != text

