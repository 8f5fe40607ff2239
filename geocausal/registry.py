"""The one registry of designs and public helpers.

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

Kind = Literal["design", "helper"]

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
    """

    name: str
    target: str
    family: str
    description: str
    kind: Kind = "design"
    roles: tuple[str, ...] = ()
    cli: bool = False

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
       cli: bool = True) -> Entry:
    return Entry(name, target, family, description, "design", roles, cli)


def _h(name: str, target: str, family: str, description: str) -> Entry:
    return Entry(name, target, family, description, "helper")


_AVG = "average effects"
_HET = "heterogeneous effects"
_PANEL = "panels"
_PRED = "predicted outcomes"
_RD = "regression discontinuity"

_ENTRIES: tuple[Entry, ...] = (
    _d("ipw", "geocausal.api.ipw:ipw", _AVG,
       "inverse probability weighting with image confounders", ("by", "folds")),
    _d("aipw", "geocausal.api.ipw:aipw", _AVG,
       "augmented IPW (doubly robust) with image confounders", ("by", "folds")),
    _d("placement", "geocausal.api.placement:placement", _AVG,
       "where treatment is placed: AUC of the propensity from images", ("by", "folds")),
    _d("fe", "geocausal.api.fe:fe", _PANEL,
       "linear fixed-effects regression (one- or two-way)", ("unit", "time")),
    _d("cate", "geocausal.api.cate:cate", _HET,
       "conditional average treatment effects (meta-learners), BLP, GATES, RATE",
       ("folds", "truth")),
    _d("dml_panel", "geocausal.api.dml_panel:dml_panel", _PANEL,
       "double machine learning for panels (partially linear, CRE)",
       ("unit", "time", "folds")),
    _d("debias", "geocausal.api.debias:debias", _PRED,
       "average effect on an ML-predicted outcome, corrected with a calibration sample",
       ("folds", "calibration", "truth")),
    _d("ppi", "geocausal.api.debias:ppi", _PRED,
       "prediction-powered inference: mean, OLS or ATE from predictions plus a few labels",
       ("folds", "truth")),
    _d("rdd", "geocausal.api.rdd:rdd", _RD,
       "regression discontinuity, scalar or distribution-valued (R3D) outcomes",
       ("running", "cutoff", "by")),
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
)

#: name -> entry, designs and helpers
REGISTRY: Mapping[str, Entry] = MappingProxyType({e.name: e for e in _ENTRIES})
#: name -> entry, designs only
DESIGNS: Mapping[str, Entry] = MappingProxyType(
    {e.name: e for e in _ENTRIES if e.kind == "design"})
#: name -> entry, helpers only
HELPERS: Mapping[str, Entry] = MappingProxyType(
    {e.name: e for e in _ENTRIES if e.kind == "helper"})
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
    geocausal.errors.DesignError: unknown design or helper 'iv'; choose one of ['aipw', 'balance', 'cate', 'cate_landcover', 'compare_debiasers', 'compare_representations', 'debias', 'dml_panel', 'effect', 'fe', 'fit_corrector', 'ipw', 'landcover_fractions', 'outcome_quantiles', 'placement', 'ppi', 'predict_cate', 'rdd', 'sensitivity_benchmark', 'signed_distance', 'transport_cate']
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
    'geocausal.api.debias'
    """
    return {e.name: e.module for e in _ENTRIES}


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


def write_docs(path: str) -> bool:
    """Rewrite the generated table between the markers of ``path``; True when it changed."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise DesignError(f"'{path}' lacks the registry table markers {DOCS_BEGIN!r} ... "
                          f"{DOCS_END!r}; add them where the table goes")
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    new = f"{head}{DOCS_BEGIN}\n\n{markdown_table()}\n{DOCS_END}{tail}"
    if new != text:
        p.write_text(new)
    return new != text

