"""The sensitivity result users receive from ``est.sensitivity(...)``: the bounds of
:mod:`geocausal.inference.sensitivity` with a contour plot.

The bounds are computed in ``inference/`` (no plotting there); this results-layer subclass adds
:meth:`SensitivityReport.plot`, so the import graph runs one way.

Examples
--------
>>> import numpy as np, pandas as pd, geocausal as gc
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=400)})
>>> df["d"] = (rng.uniform(size=400) < 1 / (1 + np.exp(-df.x))).astype(int)
>>> df["y"] = df.d + df.x + rng.normal(size=400)
>>> rep = gc.aipw("y ~ d + x", df, seed=0).sensitivity(0.03, 0.03)
>>> type(rep).__name__, hasattr(rep, "plot")
('SensitivityReport', True)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from geocausal.inference.sensitivity import SensitivityResult


@dataclass(frozen=True)
class SensitivityReport(SensitivityResult):
    """A :class:`~geocausal.inference.sensitivity.SensitivityResult` that can plot itself."""

    @classmethod
    def of(cls, result: SensitivityResult) -> SensitivityReport:
        """The same result (every field) as a report."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)})

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Contour plot of the bound over (cf_y, cf_d), the scenario and benchmarks marked.

        See :func:`geocausal.results.plot_sensitivity.sensitivity_contour`; returns the Figure.
        """
        from geocausal.results.plot_sensitivity import sensitivity_contour

        return sensitivity_contour(self, ax=ax, **kwargs)
