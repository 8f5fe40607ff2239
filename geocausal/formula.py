"""Formula parsing with formulaic: ``"y ~ d + x1 + x2 | fe1 + fe2"``.

The first right-hand term is the treatment; the rest are controls (any formulaic term:
``C(country)``, ``np.log(x)``, interactions); terms after ``|`` are fixed effects (plain columns).

Every array a face takes from the data through :class:`ParsedFormula` (outcome, treatment,
expanded controls) is validated once here: missing values are a :class:`FormulaError` with
their count, infinite values and absurd magnitudes (beyond 1e100, whose squares overflow
float64) a :class:`DataError` naming the column (:func:`geocausal.designs.common.check_values`).

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"y": [1., 2, 3, 4], "d": [0, 1, 0, 1], "x": [.1, .2, .3, .5],
...                    "g": ["a", "a", "b", "b"]})
>>> f = parse_formula("y ~ d + x | g", df)
>>> f.outcome, f.treatment, f.controls, f.fixed_effects
('y', 'd', ('x',), ('g',))
>>> f.control_matrix(df).shape
(4, 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from geocausal.designs.common import check_values
from geocausal.errors import DataError, FormulaError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*")
_FUNCS = {"C", "np", "log", "exp", "sqrt", "I", "center", "scale", "poly", "bs", "Q", "T",
          "lag", "abs"}


@dataclass(frozen=True)
class ParsedFormula:
    """A parsed formula: outcome, treatment, controls and fixed effects, all as strings."""

    formula: str
    outcome: str
    treatment: str | None
    controls: tuple[str, ...]
    fixed_effects: tuple[str, ...]

    @property
    def rhs(self) -> tuple[str, ...]:
        """Treatment then controls."""
        return ((self.treatment,) if self.treatment else ()) + self.controls

    def columns(self) -> set[str]:
        """Every data column the formula refers to."""
        cols = set()
        for term in (self.outcome, *self.rhs, *self.fixed_effects):
            cols |= _names(term)
        return cols

    def control_matrix(self, data: pd.DataFrame) -> pd.DataFrame:
        """Controls expanded by formulaic (no intercept), as a float DataFrame."""
        if not self.controls:
            return pd.DataFrame(index=data.index)
        mm = model_matrix("0 + " + " + ".join(self.controls), data, na_action="raise")
        arr = np.asarray(mm, dtype=float)
        for j, col in enumerate(mm.columns):
            check_values(arr[:, j], str(col), data.index)
        return pd.DataFrame(arr, index=data.index, columns=list(mm.columns))

    def outcome_vector(self, data: pd.DataFrame) -> np.ndarray:
        """The outcome as a float array."""
        return _column(data, self.outcome)

    @property
    def treatment_term(self) -> str:
        """The treatment term; a :class:`~geocausal.errors.FormulaError` when there is none.

        Examples
        --------
        >>> parse_formula("y ~ d + x").treatment_term
        'd'
        """
        if self.treatment is None:
            raise FormulaError(f"formula '{self.formula}' has no treatment term")
        return self.treatment

    def treatment_vector(self, data: pd.DataFrame) -> np.ndarray:
        """The treatment as a float array."""
        return _column(data, self.treatment_term)


def _names(term: str) -> set[str]:
    return {n for n in _IDENT.findall(term) if n not in _FUNCS and not n.startswith("np.")}


def _column(data: pd.DataFrame, term: str) -> np.ndarray:
    if term in data.columns:
        col = data[term]
    else:
        col = model_matrix("0 + " + term, data, na_action="ignore").iloc[:, 0]
    arr = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = int(np.isnan(arr).sum())
    if bad:
        raise FormulaError(f"column '{term}' has {bad} missing or non-numeric values")
    return check_values(arr, term, data.index)


def _split_terms(side: str) -> list[str]:
    depth, cur, out = 0, "", []
    for ch in side:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "+" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [t for t in out if t and t not in ("1", "0")]


def parse_formula(formula: str, data: pd.DataFrame | None = None, *, treatment: bool = True) -> ParsedFormula:
    """Parse ``"y ~ d + x1 + x2 | fe1 + fe2"``, checking columns against ``data``.

    Parameters
    ----------
    formula
        The formula string.
    data
        When given, every referenced column must exist.
    treatment
        Whether the first right-hand term is the treatment (False: all are controls).

    Raises
    ------
    FormulaError
        Malformed formula or unknown columns (named in the message).
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise FormulaError(f"formula '{formula}' must have exactly one '~', e.g. 'y ~ d + x1 | fe'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if formula.count("|") > 1:
        raise FormulaError(f"formula '{formula}' has more than one '|'")
    main, _, fe = rhs.partition("|")
    terms = _split_terms(main)
    fes = _split_terms(fe)
    if not lhs:
        raise FormulaError(f"formula '{formula}' has no outcome on the left of '~'")
    if treatment and not terms:
        raise FormulaError(f"formula '{formula}' has no treatment: the first right-hand term")
    try:
        Formula(lhs + " ~ " + (" + ".join(terms) or "1"))
    except Exception as exc:  # formulaic raises several types
        raise FormulaError(f"formula '{formula}' is malformed: {exc}") from None
    parsed = ParsedFormula(
        formula=formula,
        outcome=lhs,
        treatment=terms[0] if treatment and terms else None,
        controls=tuple(terms[1:] if treatment else terms),
        fixed_effects=tuple(fes),
    )
    if data is not None:
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if len(data) == 0:
            raise DataError(f"the data have no rows; formula '{formula}' cannot be estimated")
        missing = sorted(c for c in parsed.columns() if c not in data.columns)
        if missing:
            raise FormulaError(
                f"formula '{formula}' names columns not in the data: {missing}; "
                f"available: {sorted(map(str, data.columns))[:20]}"
            )
    return parsed
