"""Write an Estimate or EstimateSet to disk: tidy CSV, JSON with provenance, a figure.

Examples
--------
>>> import tempfile, pandas as pd
>>> from geocausal.results.estimate import Estimate
>>> est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.01]]), design="aipw")
>>> [p.suffix for p in write_outputs(est, tempfile.mkdtemp(), stem="x")]
['.csv', '.json', '.png']
"""

from __future__ import annotations

import json
from pathlib import Path

from geocausal.results import plot as _plot


def write_outputs(result, out: str | Path, stem: str, manifest_hash: str | None = None) -> list[Path]:
    """Write ``<stem>.csv`` (tidy), ``<stem>.json`` (everything + provenance), ``<stem>.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, js, png = out / f"{stem}.csv", out / f"{stem}.json", out / f"{stem}.png"
    result.tidy().to_csv(csv, index=False)
    payload = result.to_dict()
    if manifest_hash is not None:
        payload["manifest_hash"] = manifest_hash
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(js)
    _plot.save(result.plot(), png)
    return [csv, js, png]
