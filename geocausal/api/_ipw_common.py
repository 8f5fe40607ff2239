"""Resolution shared by the weighting faces (:mod:`geocausal.api.ipw`) and the placement face
(:mod:`geocausal.api.placement`): deprecated keywords, image alignment, per-row arguments and
``by=`` subgroups with enough units of each arm for the folds.

Examples
--------
>>> min_arm(Folds.group("village", k=3)), min_arm(5), min_arm(np.arange(10) % 2)
(3, 5, 2)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._by import fit_by, group_columns, subset
from geocausal.api._faces import public_signature  # noqa: F401  (re-exported for the faces)
from geocausal.designs.common import check_values
from geocausal.designs.ipw import IPWOptions
from geocausal.errors import DataError, OptionError
from geocausal.features.images import align_images
from geocausal.folds import Folds, names_columns
from geocausal.formula import parse_formula
from geocausal.vocabulary import DEFAULTS, choice


def legacy_options(fn: str, options: Any, folds: Any, vcov: Any, old: Mapping[str, Any]):
    """Deprecated keywords (FutureWarning naming the new spelling) merged into the options."""
    fields = {k: v for k, v in (IPWOptions.coerce(options).__dict__).items()}
    for key, value in old.items():
        if key in fields:
            new = f"options=gc.IPWOptions({key}=...) (or options={{'{key}': ...}})"
            fields[key] = value
        elif key == "fold_groups" and fn != "placement":
            new = "folds=gc.Folds.group(<column or labels>, k=...)"
            if value is not None:
                folds = Folds.group(value, k=folds if isinstance(folds, int) else DEFAULTS.folds)
        elif key == "ci" and fn == "placement":
            new = "vcov='delong' or vcov='bootstrap' (with n_boot=)"
            vcov = choice("ci", value, ("delong", "bootstrap"), design=fn) if vcov == "delong" else vcov
        else:
            raise OptionError(f"{fn}() has no option {key!r}; see help(gc.{fn})")
        warnings.warn(f"{fn}({key}=...) is deprecated; use {new}", FutureWarning, stacklevel=4)
    return IPWOptions(**fields), folds, vcov


def prepare(formula: str, data: Any, images: Any, opts: IPWOptions, by: Any, rows: Mapping,
            lazy: bool = False):
    """Align images to the data (dropping unusable units), parse the formula, refuse NaNs.

    ``lazy``: a chips cache stays on disk as a row-aligned view (image learners stream it).
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    al = align_images(images, data, missing_images=opts.missing_images, stacklevel=5,
                      lazy=lazy)
    data = al.data
    rows = {k: (replace(v, by=al.rows(v.by)) if isinstance(v, Folds) and not names_columns(v.by)
                else al.rows(v)) for k, v in rows.items()}
    pf = parse_formula(formula, data)
    used = pf.columns() | (set(group_columns(data, by)) if by is not None else set())
    bad = {c: int(data[c].isna().sum()) for c in sorted(used & set(data.columns))
           if data[c].isna().any()}
    if bad:
        raise DataError(f"missing values in {bad} (column: count); drop or impute these rows "
                        "before estimating")
    return data, al.images, pf, rows


def row_vector(data: pd.DataFrame, value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = data[value].to_numpy(dtype=float) if isinstance(value, str) else np.asarray(value, float)
    if arr.shape != (len(data),):
        raise DataError(f"{name} has shape {arr.shape}, expected ({len(data)},)")
    if np.isnan(arr).any():
        raise DataError(f"{name} has {int(np.isnan(arr).sum())} missing values")
    return check_values(arr, name, data.index, column=False)


def fold_subset(folds: Any, mask: np.ndarray) -> Any:
    if isinstance(folds, Folds):
        return folds if names_columns(folds.by) or folds.by is None else replace(folds, by=subset(folds.by, mask))
    return subset(folds, mask)


def min_arm(folds: Any) -> int:
    """Fewest units each arm needs within a group: the number of folds (2 for fold ids)."""
    if isinstance(folds, Folds):
        return folds.k
    return int(np.asarray(folds).item()) if np.isscalar(folds) else 2


def fit_groups(fit_one, data, by, d, folds, rows):
    """``by=``: :func:`fit_by` with per-row arguments subset and arms checked against folds."""
    k = min_arm(folds)

    def too_small(m):
        n1, n0 = int(d[m].sum()), int((1 - d[m]).sum())
        if min(n1, n0) < k:
            return (f"{n1} treated and {n0} control units (need at least {k} of each for "
                    f"{k}-fold cross-fitting)")
        return None

    return fit_by(lambda sub, m, name: fit_one(
        sub, {k2: (fold_subset(v, m) if k2 == "folds" else subset(v, m))
              for k2, v in rows.items()}, name), data, by, too_small=too_small, stacklevel=5)
