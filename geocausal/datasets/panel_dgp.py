"""The Fuhr and Papies (2024) panel data-generating process (their eqs. 7-9).

Per dataset: ``U_i ~ N(0, 1)`` constant within a unit and

- ``X_jit = a0_j + delta * U_i + e_jit``            (structure C only has the ``U`` term)
- ``W_it = a1 + sum_j (gamma_j / J) g0(X_jit) + delta * U_i + eta_it``   (B and C)
- ``Y_it = a2 + beta * W_it + sum_j (gamma_j / J) m0(X_jit) + delta * U_i + mu_it``  (B and C)

with intercepts and noises ``N(0, 1)``, ``gamma_j`` and ``delta`` redrawn from ``N(0, 1)`` per
dataset, ``beta = 1``, and ``g0 = m0 = x**2`` (``shape="u"``) or the identity (``"linear"``).
Structure A has no ``U``; B lets ``U`` affect ``W`` and ``Y``; C lets it affect ``X`` too.
With ``J > 1`` confounders the ``e_it`` are ``N(0, A'A)`` for a random ``A`` with entries
``N(0, 1/J)`` (unit variance on average). ``rho`` makes the outcome errors ``mu_it`` AR(1)
(stationary start), and ``two_way=True`` adds a period effect ``delta * U_t`` to every equation.

Examples
--------
>>> df = make_fuhr_papies(n_units=20, n_periods=5, seed=1)
>>> df.shape, df.attrs["beta"]
((100, 5), 1.0)
>>> sorted(df.columns)
['d', 'time', 'unit', 'x1', 'y']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geocausal.errors import DataError

STRUCTURES = ("A", "B", "C")
SHAPES = ("u", "linear")


def _link(shape: str):
    if shape == "u":
        return np.square
    if shape == "linear":
        return lambda x: x
    raise DataError(f"shape '{shape}' is not one of {SHAPES}")


def _ar1(rng: np.random.Generator, n: int, t: int, rho: float) -> np.ndarray:
    """``(n, t)`` AR(1) errors with unit-variance innovations and a stationary start."""
    e = rng.standard_normal((n, t))
    if rho == 0:
        return e
    out = np.empty_like(e)
    out[:, 0] = e[:, 0] / np.sqrt(1 - rho**2)
    for s in range(1, t):
        out[:, s] = rho * out[:, s - 1] + e[:, s]
    return out


def make_fuhr_papies(
    n_units: int = 500,
    n_periods: int = 10,
    *,
    structure: str = "C",
    shape: str = "u",
    n_confounders: int = 1,
    rho: float = 0.0,
    two_way: bool = False,
    beta: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate one Fuhr-Papies panel dataset.

    Parameters
    ----------
    n_units, n_periods
        N and T (balanced panel).
    structure
        ``"A"`` (no unobserved heterogeneity), ``"B"`` (``U`` affects treatment and outcome) or
        ``"C"`` (``U`` also affects the confounders).
    shape
        ``"u"`` (``g0 = m0 = x**2``) or ``"linear"``.
    n_confounders
        J, the number of observed confounders ``x1..xJ``.
    rho
        AR(1) coefficient of the outcome errors, in ``[0, 1)``.
    two_way
        Add period effects ``delta * U_t`` to every equation.
    beta
        The true effect of ``d`` on ``y``.
    seed
        Seed of every draw (including ``gamma`` and ``delta``).

    Returns
    -------
    pandas.DataFrame
        Columns ``unit, time, y, d, x1..xJ`` sorted by unit and time; ``attrs`` hold the
        truth (``beta``), the drawn ``gamma`` and ``delta`` and the settings.

    Examples
    --------
    >>> make_fuhr_papies(10, 3, structure="A", n_confounders=2, seed=0).columns.tolist()
    ['unit', 'time', 'y', 'd', 'x1', 'x2']
    """
    if structure not in STRUCTURES:
        raise DataError(f"structure '{structure}' is not one of {STRUCTURES}")
    if not 0 <= rho < 1:
        raise DataError(f"rho must be in [0, 1), got {rho}")
    if n_units < 1 or n_periods < 1 or n_confounders < 1:
        raise DataError("n_units, n_periods and n_confounders must be positive")
    f = _link(shape)
    rng = np.random.default_rng(seed)
    n, t, j = n_units, n_periods, n_confounders
    gamma = rng.standard_normal(j)
    delta = float(rng.standard_normal())
    a0 = rng.standard_normal(j)
    a1, a2 = rng.standard_normal(2)
    u_i = rng.standard_normal(n)[:, None] if structure != "A" else np.zeros((n, 1))
    u_t = rng.standard_normal(t)[None, :] if two_way else np.zeros((1, t))
    het = delta * (u_i + u_t)  # (n, t)
    if j == 1:
        eps = rng.standard_normal((n, t, 1))
    else:
        a = rng.normal(scale=1 / np.sqrt(j), size=(j, j))
        eps = rng.standard_normal((n, t, j)) @ a
    x_het = het if structure == "C" else delta * u_t + np.zeros((n, 1))
    x = a0[None, None, :] + x_het[:, :, None] + eps
    conf_w = (f(x) * (gamma / j)).sum(axis=2)
    conf_y = (f(x) * (gamma / j)).sum(axis=2)
    w = a1 + conf_w + het + rng.standard_normal((n, t))
    y = a2 + beta * w + conf_y + het + _ar1(rng, n, t, rho)
    out = pd.DataFrame({
        "unit": np.repeat(np.arange(n), t),
        "time": np.tile(np.arange(t), n),
        "y": y.ravel(),
        "d": w.ravel(),
    })
    for k in range(j):
        out[f"x{k + 1}"] = x[:, :, k].ravel()
    out.attrs.update({"beta": float(beta), "gamma": gamma.tolist(), "delta": delta,
                      "structure": structure, "shape": shape, "rho": rho, "two_way": two_way})
    return out
