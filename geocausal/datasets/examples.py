"""Small tabular example data with a known truth, for the README tour, docs and notebooks.

- :func:`wealth_survey`: an ML-predicted outcome (a wealth map) for every unit, and a
  calibration sample where the survey truth is known too (the debiasing and PPI designs);
- :func:`border_distributions`: pixel-value distributions of units on both sides of a border
  (the distribution-valued regression discontinuity, R3D);
- :func:`close_elections`: a scalar regression discontinuity (vote share against the margin
  of the previous election);
- :func:`panel` is :func:`geocausal.datasets.panel_dgp.make_fuhr_papies` (panel double ML).

Every function draws from ``numpy.random.default_rng(seed)`` and is deterministic given its
arguments; the true effects are arguments, so a result can be read against them.

Examples
--------
>>> df, cal = wealth_survey(n=200, n_calibration=50, seed=1)
>>> sorted(cal.columns)
['iwi', 'iwi_hat', 'village', 'x1']
>>> pixel_samples, dist = border_distributions(n=40, m=10)
>>> pixel_samples.shape, dist.shape
((40, 10), (40,))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geocausal.datasets.panel_dgp import make_fuhr_papies
from geocausal.errors import DataError


def _check(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def wealth_survey(n: int = 2000, n_calibration: int = 400, *, effect: float = 5.0,
                  shrink: float = 0.6, n_villages: int = 80,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A wealth map: predicted wealth for every unit, survey truth in a calibration sample.

    The true International Wealth Index is ``iwi = 50 + 8 x1 + effect d + village + noise``;
    the treatment ``d`` is more likely where ``x1`` is high (confounded through ``x1``). The
    map's prediction ``iwi_hat`` regresses towards the mean as ML predictions do:
    ``iwi_hat = mean + shrink (iwi - mean) + noise``, so the naive effect on ``iwi_hat`` is
    about ``shrink * effect``.

    Parameters
    ----------
    n
        Units in the study (``df``), at least 20.
    n_calibration
        Units with survey truth (``cal``), at least 20; drawn from the same population.
    effect
        True effect of ``d`` on ``iwi``.
    shrink
        Slope of the prediction on the truth (attenuation), in (0, 1].
    n_villages
        Number of villages (clusters), at least 2.
    seed
        Seed of every random step.

    Returns
    -------
    df : pandas.DataFrame
        ``village``, ``x1``, ``d``, ``iwi_hat`` (the truth is not observed here).
    cal : pandas.DataFrame
        ``village``, ``x1``, ``iwi_hat``, ``iwi`` (prediction and survey truth).

    Examples
    --------
    >>> df, cal = wealth_survey(n=500, n_calibration=100, seed=0)
    >>> list(df.columns)
    ['village', 'x1', 'd', 'iwi_hat']
    """
    n = _check("n", n, 20)
    n_calibration = _check("n_calibration", n_calibration, 20)
    n_villages = _check("n_villages", n_villages, 2)
    if not np.isfinite(effect):
        raise DataError(f"effect must be finite, got {effect!r}")
    if not (np.isfinite(shrink) and 0 < shrink <= 1):
        raise DataError(f"shrink must be in (0, 1], got {shrink!r}")
    rng = np.random.default_rng(seed)
    village_effect = rng.normal(0.0, 3.0, n_villages)

    def draw(size: int, treated: bool) -> pd.DataFrame:
        village = rng.integers(0, n_villages, size)
        x1 = rng.normal(0.0, 1.0, size)
        d = rng.binomial(1, 1 / (1 + np.exp(-0.8 * x1))) if treated else np.zeros(size, int)
        iwi = 50 + 8 * x1 + effect * d + village_effect[village] + rng.normal(0, 6.0, size)
        iwi_hat = 50 + shrink * (iwi - 50) + rng.normal(0, 3.0, size)
        return pd.DataFrame({"village": [f"v{v:03d}" for v in village], "x1": x1, "d": d,
                             "iwi_hat": iwi_hat, "iwi": iwi})

    df = draw(n, True).drop(columns="iwi")
    cal = draw(n_calibration, True)[["village", "x1", "iwi_hat", "iwi"]]
    return df, cal


def border_distributions(n: int = 300, m: int = 50, *, effect: float = 1.0,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel samples of units on both sides of a border, for a distributional RD.

    Unit ``i`` lies at signed distance ``dist[i]`` (uniform on [-1, 1]) from the border; its
    ``m`` pixel values are normal with mean ``5 + 5 dist + effect 1{dist >= 0}`` and standard
    deviation ``|1 + dist|`` (DGP 1 of the R3D paper), so every quantile jumps by ``effect``
    at the border.

    Parameters
    ----------
    n
        Units, at least 20.
    m
        Pixels per unit, at least 2.
    effect
        The jump of every quantile at the border.
    seed
        Seed of every random step.

    Returns
    -------
    pixel_samples : numpy.ndarray
        ``(n, m)`` pixel values.
    dist : numpy.ndarray
        ``(n,)`` signed distance to the border (the running variable; cutoff 0).

    Examples
    --------
    >>> y, x = border_distributions(n=100, m=5, effect=0.0, seed=2)
    >>> bool((x >= -1).all() and (x <= 1).all())
    True
    """
    n = _check("n", n, 20)
    m = _check("m", m, 2)
    if not np.isfinite(effect):
        raise DataError(f"effect must be finite, got {effect!r}")
    rng = np.random.default_rng(seed)
    dist = rng.uniform(-1, 1, n)
    loc = 5 + 5 * dist + effect * (dist >= 0)
    pixel_samples = rng.normal(loc[:, None], np.abs(1 + dist)[:, None], size=(n, m))
    return pixel_samples, dist


def close_elections(n: int = 1000, *, effect: float = 7.0, seed: int = 0) -> pd.DataFrame:
    """A scalar regression discontinuity: vote share against the previous winning margin.

    ``vote = 45 + 0.4 margin + effect 1{margin >= 0} + noise`` with ``margin`` uniform on
    [-50, 50] (percentage points), in the style of the US Senate incumbency data.

    Parameters
    ----------
    n
        Elections, at least 20.
    effect
        The jump of the expected vote share at a margin of 0.
    seed
        Seed of every random step.

    Returns
    -------
    pandas.DataFrame
        ``margin`` and ``vote``.

    Examples
    --------
    >>> list(close_elections(n=50).columns)
    ['margin', 'vote']
    """
    n = _check("n", n, 20)
    if not np.isfinite(effect):
        raise DataError(f"effect must be finite, got {effect!r}")
    rng = np.random.default_rng(seed)
    margin = rng.uniform(-50, 50, n)
    vote = 45 + 0.4 * margin + effect * (margin >= 0) + rng.normal(0, 8.0, n)
    return pd.DataFrame({"margin": margin, "vote": vote})


#: a panel with unit heterogeneity (Fuhr and Papies' design): ``unit``, ``time``, ``y``, ``d``,
#: ``x1``...; the effect of ``d`` is ``beta`` (1 by default)
panel = make_fuhr_papies

__all__ = ["border_distributions", "close_elections", "panel", "wealth_survey"]
