"""gc.spec_curve: rows equal direct calls, labelled alternatives, data-layer choices, failures,
Dask equals serial, the figure, and bad grids."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import DataError, DesignError, DiagnosticWarning, FailedSpecificationWarning
from geocausal.speccurve import SpecCurve, expand_grid

COLS = ["estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]


def _learners():
    return {"propensity": LogisticRegression(), "outcome": LinearRegression()}


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(7)
    n = 300
    df = pd.DataFrame({"x1": rng.normal(size=n)}, index=[f"u{i}" for i in range(n)])
    df["d"] = rng.binomial(1, 1 / (1 + np.exp(-2 * df.x1)))
    df["y"] = df.d + df.x1 + rng.normal(size=n)
    # image features keyed by unit id, given in another order: aligned by key, not position
    feats = pd.DataFrame({"f1": df.x1 + 0.1 * rng.normal(size=n)}, index=df.index)
    return df, feats.iloc[::-1]


@pytest.fixture(scope="module")
def aipw_curve(study):
    df, feats = study
    grid = {"trim": [None, 0.05], "folds": [2, 5], "images": {"none": None, "engineered": feats}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        return gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid=grid, seed=3,
                             learners=_learners()), grid


def test_rows_equal_direct_calls(study, aipw_curve):
    df, feats = study
    sc, grid = aipw_curve
    assert len(sc.table) == sc.n_specs == 8 and sc.n_failed == 0
    assert list(sc.table.columns[:5]) == ["spec", "trim", "folds", "images", "term"]
    images = grid["images"]
    for _, row in sc.table.iterrows():
        trim = None if row.trim == "None" else float(row.trim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            est = gc.aipw("y ~ d + x1", df, trim=trim, folds=int(row.folds),
                          images=images[row.images], seed=3, learners=_learners())
        direct = est.tidy().set_index("term").loc["d"]
        np.testing.assert_allclose(row[COLS].to_numpy(float), direct[COLS].to_numpy(float),
                                   rtol=0, atol=1e-12)
        assert row.nobs == est.nobs
        assert sc.estimates[row.spec].params["d"] == est.params["d"]
    # trimming drops units (and warns, counted once per distinct message across specs)
    assert (sc.table.loc[sc.table.trim == "0.05", "nobs"] < len(df)).all()
    assert (sc.table.loc[sc.table.trim == "0.05", "n_warnings"] >= 1).all()


def test_labelled_alternatives_and_summary(aipw_curve):
    sc, _ = aipw_curve
    assert dict(sc.choices) == {"trim": ("None", "0.05"), "folds": ("2", "5"),
                                "images": ("none", "engineered")}
    assert sc.table.images.tolist() == ["none", "engineered"] * 4
    s = sc.summary().iloc[0]
    assert s.n_specs == 8 and s.n_failed == 0
    assert s["min"] <= s["median"] <= s["max"]
    assert len(sc.estimate_set()) == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.design = "other"
    assert "8 specifications (0 failed)" in repr(sc)


def test_seed_reaches_every_spec(study):
    df, _ = study
    a = gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"folds": [2]}, seed=1)
    b = gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"folds": [2]}, seed=2)
    direct = gc.aipw("y ~ d + x1", df, folds=2, seed=2).params["d"]
    assert b.table.estimate[0] == direct != a.table.estimate[0]
    seeds = gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"seed": [1, 2], "folds": [2]})
    assert seeds.table.estimate.tolist() == [a.table.estimate[0], b.table.estimate[0]]


def test_other_exceptions_propagate_naming_the_spec(study):
    df, _ = study

    def design(formula, data, *, k: int = 0):
        if k == 2:
            raise ValueError("a bug")
        return gc.fe("y ~ d + x1 | g", data.assign(g=np.arange(len(data)) % 10))

    with pytest.raises(ValueError, match="a bug") as info:
        gc.spec_curve(design, "y ~ d", df, grid={"k": [1, 2]}, term="d")
    assert "in specification k=2" in "".join(getattr(info.value, "__notes__", []))


def test_failures_recorded_with_counted_warning(study):
    df, _ = study
    with pytest.warns(FailedSpecificationWarning, match=r"^2 of 6 specifications failed"):
        sc = gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"trim": [None, 0.7, 0.01],
                                                           "folds": [2, 3]},
                           learners=_learners())
    failed = sc.table[sc.table.status == "failed"]
    assert failed.trim.tolist() == ["0.7", "0.7"] and failed.estimate.isna().all()
    assert failed.error.str.contains("trim").all() and sc.n_failed == 2
    assert [sc.estimates[i] is None for i in range(6)] == [False, False, True, True, False, False]
    ok = sc.table[sc.table.status == "ok"]
    assert ok.estimate.notna().all() and (ok.error == "").all()
    fig = sc.plot()
    assert "2 failed" in fig.axes[0].get_title()


def test_data_layer_choices_through_a_callable(study):
    df, _ = study
    calls = []

    def load(noise: float) -> pd.DataFrame:  # stands in for gc.load_study(manifest, ...)
        calls.append(noise)
        out = df.copy()
        out["x1"] = out.x1 + noise * np.sin(np.arange(len(out)))
        return out

    sc = gc.spec_curve(gc.aipw, "y ~ d + x1", load, grid={"noise": {"exact": 0.0, "noisy": 0.5},
                                                         "folds": [2, 4]},
                       learners=_learners())
    assert calls == [0.0, 0.5]  # once per data-layer combination
    for _, row in sc.table.iterrows():
        noise = {"exact": 0.0, "noisy": 0.5}[row.noise]
        est = gc.aipw("y ~ d + x1", load(noise), folds=int(row.folds), learners=_learners())
        assert abs(row.estimate - est.params["d"]) <= 1e-12
    # a callable may return design keywords (arrays for gc.rdd) instead of a table
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 600)
    y = 0.5 * (x >= 0) + x + 0.3 * rng.normal(size=600)

    def arrays(shift: float) -> dict:
        return {"outcome": y + shift * (x >= 0), "running": x}

    rd = gc.spec_curve(gc.rdd, None, arrays, grid={"shift": [0.0, 1.0], "bandwidth": {
        "triangular": {"kernel": "triangular"}, "uniform": gc.Bandwidth(kernel="uniform")}},
        term="mean")
    direct = gc.rdd(outcome=y + (x >= 0), running=x,
                    bandwidth={"kernel": "uniform"}).params["mean"]
    assert abs(rd.table.set_index(["shift", "bandwidth"]).loc[("1.0", "uniform"), "estimate"]
               - direct) <= 1e-12
    # the planted shift moves every estimate by one, up to the bandwidth choice
    est = rd.table.set_index(["shift", "bandwidth"]).estimate
    assert abs(est[("1.0", "triangular")] - est[("0.0", "triangular")] - 1.0) < 0.05


def test_dask_equals_serial(study):
    distributed = pytest.importorskip("dask.distributed")
    df, feats = study

    def load(scale: float) -> pd.DataFrame:
        return df.assign(x1=df.x1 * scale)

    grid = {"scale": [1.0, 2.0], "trim": [None, 0.01, 0.7],
            "images": {"none": None, "engineered": feats}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = gc.spec_curve(gc.aipw, "y ~ d + x1", load, grid=grid, learners=_learners())
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster:
            by_address = gc.spec_curve(gc.aipw, "y ~ d + x1", load, grid=grid,
                                       learners=_learners(), scheduler=cluster.scheduler_address)
            with distributed.Client(cluster) as client:
                by_client = gc.spec_curve(gc.aipw, "y ~ d + x1", load, grid=grid,
                                          learners=_learners(), scheduler=client)
                assert client.status == "running"  # a client the caller owns stays open
    assert serial.n_failed == 4
    pd.testing.assert_frame_equal(serial.table, by_address.table, check_exact=True)
    pd.testing.assert_frame_equal(serial.table, by_client.table, check_exact=True)


def test_figure_has_labelled_axes(aipw_curve):
    sc, _ = aipw_curve
    fig = sc.plot()
    top, bottom = fig.axes
    assert top.get_ylabel() == "estimate of d (95% CI)"
    assert bottom.get_xlabel() == "specification (sorted by estimate)"
    assert bottom.get_ylabel() == "choices"
    ticks = [t.get_text() for t in bottom.get_yticklabels()]
    assert ticks == ["trim = None", "trim = 0.05", "folds = 2", "folds = 5", "images = none",
                     "images = engineered"]
    # sorted estimates on top (one point per specification), the null as a reference line
    from matplotlib.collections import PathCollection

    pts = np.concatenate([c.get_offsets() for c in top.collections
                          if isinstance(c, PathCollection)])
    pts = pts[np.argsort(pts[:, 0])]
    assert len(pts) == 8 and np.all(np.diff(pts[:, 1]) >= 0)
    np.testing.assert_allclose(pts[:, 1], np.sort(sc.table.estimate.to_numpy()))
    assert any(np.allclose(line.get_ydata(), 0.0) for line in top.get_lines())
    with pytest.raises(DataError, match="not in the curve"):
        sc.plot(term="x1")
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("grid, match", [
    ({}, "grid is empty"),
    ({"trimm": [0.01]}, r"grid\['trimm'\] is not a keyword of aipw \(did you mean 'trim'\?\)"),
    ({"trim": []}, r"grid\['trim'\] has no options"),
    ({"trim": 0.05}, "must be a list of options or a dict"),
    ({"data": [1]}, "callable data="),
    ({"trim": [0.01, 0.01]}, "listed twice"),
    ({"learners": [_learners()]}, "give labelled alternatives as a dict"),
    ([("trim", [0.1])], "grid must be a dict"),
])
def test_bad_grid_named_error(study, grid, match):
    df, _ = study
    with pytest.raises(DesignError, match=match):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid=grid)


def test_bad_options_named_errors(study):
    df, _ = study
    with pytest.raises(DesignError, match=r"\['lerners'\] are not keywords of aipw"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"trim": [None]}, lerners=_learners())
    with pytest.raises(DesignError, match="both in the grid and as fixed"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"folds": [2]}, folds=3)
    with pytest.raises(DesignError, match="formulas in the grid only"):
        gc.spec_curve(gc.aipw, "y ~ d", df, grid={"formula": ["y ~ d + x1"]})
    with pytest.raises(DesignError, match="not a term of any"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"folds": [2]}, term="x9")
    with pytest.raises(DesignError, match="several terms"):
        gc.spec_curve(gc.fe, "y ~ d + x1 | g", df.assign(g=np.arange(len(df)) % 10),
                      grid={"vcov": ["hetero"]})
    with pytest.raises(DataError, match="data must be a DataFrame"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df.to_numpy(), grid={"folds": [2]})
    with pytest.raises(DataError, match="alpha"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", df, grid={"folds": [2]}, alpha=1.5)

    def load(seed: int) -> pd.DataFrame:
        return df

    with pytest.raises(DesignError, match="rename the data callable's parameter"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", load, grid={"seed": [0, 1]})

    def bad(k: int):
        return df.to_numpy()

    with pytest.raises(DesignError, match="the data callable returned ndarray"):
        gc.spec_curve(gc.aipw, "y ~ d + x1", bad, grid={"k": [1]})


def test_expand_grid_order_and_targets():
    def load(radius: float):
        return None

    choices, specs = expand_grid({"radius": [1, 2], "trim": {"a": None, "b": 0.1}},
                                 gc.aipw, load)
    assert [(c.name, c.target) for c in choices] == [("radius", "data"), ("trim", "design")]
    assert specs == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert isinstance(SpecCurve(pd.DataFrame({"term": []}), (), {}), SpecCurve)
