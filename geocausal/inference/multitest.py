"""Multiple-testing adjustments (Holm, Benjamini-Hochberg), via statsmodels.

Examples
--------
>>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(2).tolist()
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import numpy as np

from geocausal.errors import DataError

_METHODS = {"holm": "holm", "bh": "fdr_bh", "fdr_bh": "fdr_bh", "bonferroni": "bonferroni"}


def adjust_pvalues(pvalues, method: str = "holm") -> np.ndarray:
    """Adjusted p-values; ``method`` is ``"holm"``, ``"bh"`` or ``"bonferroni"``."""
    if method not in _METHODS:
        raise DataError(f"p-value adjustment '{method}' is not one of {sorted(_METHODS)}")
    from statsmodels.stats.multitest import multipletests  # lazy: statsmodels is slow to import

    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return p
    return multipletests(p, method=_METHODS[method])[1]
