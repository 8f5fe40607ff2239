"""One progress-bar helper for every long loop (extraction, training, repetitions, splits,
bootstraps, Monte Carlo runs, paper pipelines).

A bar is shown only when someone can see it: in a terminal (stderr is a TTY) or in a Jupyter
kernel, and never when the caller passes ``enabled=False`` or the environment sets
``GEOCAUSAL_PROGRESS=0``. In a notebook the widget bar (``tqdm.notebook``) is used only when
``ipywidgets`` is importable; otherwise the plain text bar, so tqdm never warns about
IProgress/ipywidgets.

Examples
--------
>>> total = 0
>>> for i in progress(range(3), desc="demo", enabled=False):
...     total += i
>>> total
3
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from geocausal.errors import DataError

__all__ = ["progress", "progress_visible"]


def _in_notebook() -> bool:
    """True inside a Jupyter (ZMQ) kernel; never imports IPython itself."""
    if "IPython" not in sys.modules:
        return False
    try:
        ip = sys.modules["IPython"].get_ipython()
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def progress_visible(enabled: bool = True) -> bool:
    """Whether a bar would be shown now.

    ``enabled=False`` or ``GEOCAUSAL_PROGRESS=0`` always hides it; otherwise it shows in a
    terminal or a notebook and hides when output goes to a file, a pipe or a test runner.

    Examples
    --------
    >>> progress_visible(False)
    False
    """
    if not isinstance(enabled, bool | np.bool_):
        raise DataError(f"progress must be True or False, got {enabled!r}")
    if not enabled or os.environ.get("GEOCAUSAL_PROGRESS", "").strip().lower() in (
            "0", "false", "no", "off"):
        return False
    return _in_notebook() or _stderr_is_tty()


def _bar_class(show: bool):
    """``tqdm.notebook.tqdm`` in a notebook with ipywidgets importable, else plain ``tqdm``
    (tqdm.auto would warn about IProgress when ipywidgets is missing).
    """
    if show and _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as bar_cls
    else:
        from tqdm import tqdm as bar_cls
    return bar_cls


def progress(iterable: Iterable | None = None, *, total: int | None = None,
             desc: str | None = None, enabled: bool = True, unit: str = "it",
             leave: bool = False, min_total: int = 0, **kwargs: Any):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``), silent when not visible.

    Parameters
    ----------
    iterable
        What to iterate over; None for a manual bar (call ``update``; use as a context manager
        or call ``close``).
    total
        Number of steps (default ``len(iterable)`` when it has one).
    desc
        Label shown before the bar.
    enabled
        False hides the bar (the ``progress=`` option of geocausal functions).
    min_total
        Hide the bar when there are fewer steps than this (e.g. a single repetition).
    unit, leave, **kwargs
        Passed to tqdm.

    Returns
    -------
    tqdm.tqdm
        Iterate over it like ``iterable``; when hidden it prints nothing at all.

    Examples
    --------
    >>> with progress(total=2, desc="steps", enabled=False) as bar:
    ...     _ = bar.update(2)
    >>> bar.disable
    True
    """
    show = progress_visible(enabled)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if min_total and total is not None and total < min_total:
        show = False
    return _bar_class(show)(iterable, total=total, desc=desc, disable=not show, unit=unit, leave=leave,
                   **kwargs)
