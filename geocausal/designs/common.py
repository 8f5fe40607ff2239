"""Input checks shared by the designs.

Examples
--------
>>> import numpy as np
>>> check_treatment(np.array([1, 0, 1])).tolist()
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

import numpy as np

from geocausal.errors import DataError, DesignError


def check_treatment(d: np.ndarray, name: str = "treatment") -> np.ndarray:
    """Validate a binary 0/1 treatment; raise with counts otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> check_treatment(np.array([0., 1, 1])).tolist()
    [0.0, 1.0, 1.0]
    """
    d = np.asarray(d, dtype=float)
    nan = int(np.isnan(d).sum())
    if nan:
        raise DataError(f"{name} has {nan} missing values; drop or impute them first")
    vals = np.unique(d)
    if not np.all(np.isin(vals, [0.0, 1.0])):
        raise DataError(f"{name} must be binary 0/1, found {vals.size} distinct values "
                        f"(e.g. {vals[:5].tolist()}); recode it as 0/1")
    n1 = int(d.sum())
    if n1 == 0 or n1 == d.size:
        raise DesignError(f"{name} has {n1} treated and {d.size - n1} control units; "
                          "both arms are needed")
    return d
