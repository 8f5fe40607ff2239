"""One progress helper for all long work: silent when not a TTY or ``progress=False``, the
plain bar in a notebook without ipywidgets (no TqdmWarning), used by the long loops."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from geocausal import _progress
from geocausal._progress import progress, progress_visible
from geocausal.designs.cate_eval import rate
from geocausal.errors import DataError


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Stderr:
    """Replaces sys.stderr lazily: pytest's capture resets it between setup and call, so the
    swap happens on first use inside the test body."""

    def __init__(self, stream, monkeypatch):
        self.stream, self.mp = stream, monkeypatch
        monkeypatch.delenv("GEOCAUSAL_PROGRESS", raising=False)

    def __enter__(self):
        self.mp.setattr("sys.stderr", self.stream)
        return self.stream

    def __exit__(self, *exc):
        self.mp.undo()

    def getvalue(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def tty(monkeypatch):
    return _Stderr(_Tty(), monkeypatch)


@pytest.fixture
def pipe(monkeypatch):
    return _Stderr(io.StringIO(), monkeypatch)


def test_shown_on_a_tty_only(tty):
    with tty:
        assert list(progress(range(3), desc="steps")) == [0, 1, 2]
    assert "steps" in tty.getvalue()          # the check below can fail


def test_silent_when_not_a_tty(pipe):
    with pipe:
        assert list(progress(range(3), desc="steps")) == [0, 1, 2]
    assert pipe.getvalue() == ""


def test_silent_when_disabled(tty, monkeypatch):
    with tty:
        assert list(progress(range(3), desc="steps", enabled=False)) == [0, 1, 2]
        assert list(progress(range(1), desc="one", min_total=2)) == [0]
        assert tty.getvalue() == ""
        monkeypatch.setenv("GEOCAUSAL_PROGRESS", "0")
        assert not progress_visible(True)
        list(progress(range(3), desc="steps"))
        assert tty.getvalue() == ""


def test_option_validated():
    for bad in ("yes", None, 1.0):
        with pytest.raises(DataError, match="progress must be True or False"):
            progress_visible(bad)
    import pandas as pd

    import geocausal as gc

    df = pd.DataFrame({"y": [0.0, 1.0] * 20, "d": [0, 1] * 20, "x": np.arange(40.0)})
    with pytest.raises(DataError, match="progress"):
        gc.cate("y ~ d + x", df, propensity=0.5, progress="yes")


def test_notebook_without_ipywidgets_uses_plain_bar(monkeypatch, pipe):
    from tqdm import tqdm as plain

    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    real = _progress.importlib.util.find_spec
    monkeypatch.setattr(_progress.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    assert _progress._bar_class(True) is plain
    with pipe, warnings.catch_warnings():
        warnings.simplefilter("error")          # a TqdmWarning would fail here
        assert list(progress(range(4), desc="nb")) == [0, 1, 2, 3]
    assert "nb" in pipe.getvalue()              # shown in the notebook (not a TTY there)


def test_long_loops_report_progress(tty):
    rng = np.random.default_rng(0)
    phi, pri = rng.normal(size=200), rng.normal(size=200)
    with tty:
        r1 = rate(phi, pri, n_boot=30, seed=1, progress=False)
        assert tty.getvalue() == ""
        r2 = rate(phi, pri, n_boot=30, seed=1)
        assert "RATE bootstrap" in tty.getvalue()
    assert r1.std_error == r2.std_error         # the bar changes no number
