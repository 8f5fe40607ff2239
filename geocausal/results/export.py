"""Write an Estimate or EstimateSet to disk: tidy CSV, JSON, Markdown and LaTeX tables, a figure.

Examples
--------
>>> import tempfile, pandas as pd
>>> from geocausal.results.estimate import Estimate
>>> est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.01]]), design="aipw")
>>> [p.suffix for p in write_outputs(est, tempfile.mkdtemp(), stem="x")]
['.csv', '.json', '.md', '.tex', '.png']
"""

from __future__ import annotations

import json
from pathlib import Path

from geocausal.results import plot as _plot


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_tables(result, out: str | Path, stem: str, caption: str | None = None,
                 names: list[str] | None = None) -> list[Path]:
    """Write ``<stem>.md`` and ``<stem>.tex`` (booktabs) regression tables of ``result``.

    ``result`` is an Estimate, an EstimateSet or a sequence of them (one table, side by side);
    ``names`` are the model names (default ``(1), (2), ...``); ``caption`` goes above both.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from geocausal.results.estimate import Estimate
    >>> est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.01]]))
    >>> [p.name for p in write_tables([est, est], tempfile.mkdtemp(), "two")]
    ['two.md', 'two.tex']
    """
    from geocausal.results.table import etable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = tuple(result) if isinstance(result, list | tuple) else (result,)
    md, tex = out / f"{stem}.md", out / f"{stem}.tex"
    head = f"**{caption}**\n\n" if caption else ""
    _write_atomic(md, head + etable(*items, fmt="md", names=names) + "\n")
    _write_atomic(tex, etable(*items, fmt="latex", names=names, caption=caption) + "\n")
    return [md, tex]


def write_outputs(result, out: str | Path, stem: str, manifest_hash: str | None = None) -> list[Path]:
    """Write ``<stem>.csv`` (tidy), ``<stem>.json`` (everything + provenance), ``<stem>.md`` and
    ``<stem>.tex`` (regression tables, :func:`geocausal.etable`) and ``<stem>.png``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, js, png = out / f"{stem}.csv", out / f"{stem}.json", out / f"{stem}.png"
    result.tidy().to_csv(csv, index=False)
    payload = result.to_dict()
    if manifest_hash is not None:
        payload["manifest_hash"] = manifest_hash
    _write_atomic(js, json.dumps(payload, indent=2))  # to_dict holds only JSON values
    tables = write_tables(result, out, stem)
    _plot.save(result.plot(), png)
    return [csv, js, *tables, png]
