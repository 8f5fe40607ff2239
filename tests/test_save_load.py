"""est.save / gc.load round-trip exactly for every design; pickle works; loading runs no code."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import DataError, NotSavedWarning
from geocausal.results.estimate import Estimate, EstimateSet
from geocausal.results.io import NotSaved, from_bytes, to_bytes


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-x1))).astype(float)
    y = d + x1 + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "d": d, "x1": x1, "x2": rng.normal(size=n),
                       "g": rng.integers(0, 30, size=n), "unit": np.repeat(np.arange(n // 4), 4),
                       "time": np.tile(np.arange(4), n // 4),
                       "truth": y + rng.normal(scale=0.5, size=n),
                       "dist": rng.uniform(-1, 1, size=n)})
    df["yhat"] = 0.6 * df["truth"] + rng.normal(scale=0.3, size=n)
    df["prediction"] = df["yhat"]
    return df


@pytest.fixture(scope="module")
def results():
    from geocausal.designs.rdd.simulate import simulate

    df, cal = _frame(200, 0), _frame(120, 1)
    lrn = {"outcome": LinearRegression(), "propensity": LogisticRegression()}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["ipw"] = gc.ipw("y ~ d + x1", df, learners={"propensity": LogisticRegression()},
                            folds=2, vcov={"cluster": "g"})
        out["aipw"] = gc.aipw("y ~ d + x1", df, learners=lrn, folds=2)
        out["aipw_by"] = gc.aipw("y ~ d + x1", df, learners=lrn, folds=2, by="time")
        out["placement"] = gc.placement("d ~ x1 + x2", df, folds=2,
                                        learners={"propensity": LogisticRegression()})
        out["fe"] = gc.fe("y ~ d + x1 | unit + time", df, vcov={"cluster": "unit"})
        out["cate"] = gc.cate("y ~ d + x1 + x2", df, propensity=0.5, folds=2,
                              options={"n_splits": 2, "n_boot": 20},
                              learners={"outcome": LinearRegression(),
                                        "final": LinearRegression()})
        out["dml_panel"] = gc.dml_panel(
            "y ~ d + x1", df, unit="unit", time="time", approach="fd", folds=2, n_boot=50,
            learners={"ml_l": LinearRegression(), "ml_m": LinearRegression()})
        out["debias"] = gc.debias("yhat ~ d", df, calibration=cal, method="tweedie", n_boot=50,
                                  prediction="prediction")
        dfp = df.copy()
        dfp.loc[dfp.index[::2], "truth"] = np.nan
        out["ppi"] = gc.ppi("yhat ~ d", dfp, truth="truth", estimand="ate")
        out["rdd"] = gc.rdd("y ~ 1", df, running="dist", inference={"n_boot": 50},
                            checks={"density_test": False})
        x, ys = simulate("dgp1", 300, 30, delta=2.0, seed=3)
        out["rdd_dist"] = gc.rdd(outcome=list(ys), running=x, q_grid=np.arange(1, 10) / 10,
                                 inference={"n_boot": 100}, checks={"density_test": False})
    return out


def assert_same(a, b, where="result"):  # noqa: C901 - one comparison per kind
    """Exact equality of values, dtypes, indexes and types, recursively."""
    if isinstance(a, NotSaved):
        assert isinstance(b, NotSaved) and a == b, where
        return
    if not isinstance(b, NotSaved) and type(a) is not type(b):
        raise AssertionError(f"{where}: {type(a).__name__} != {type(b).__name__}")
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
        for c in range(a.shape[1]):
            for x, y in zip(a.iloc[:, c].to_numpy(), b.iloc[:, c].to_numpy()):
                if not isinstance(x, float | int | np.generic | str | bool) and x is not None:
                    assert_same(x, y, f"{where}[{c}]")
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b, exact=True, obj=where)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.flags.writeable == b.flags.writeable, where
        if a.dtype == object:
            for j, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                assert_same(x, y, f"{where}[{j}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, Mapping):
        assert list(a) == list(b), (where, list(a), list(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, list | tuple | set | frozenset):
        assert len(a) == len(b), where
        for j, (x, y) in enumerate(zip(sorted(a, key=repr) if isinstance(a, set | frozenset)
                                       else a, sorted(b, key=repr)
                                       if isinstance(b, set | frozenset) else b)):
            assert_same(x, y, f"{where}[{j}]")
    elif isinstance(a, float | np.floating):
        assert (np.isnan(a) and np.isnan(b)) or a == b, where
    else:
        assert a == b, (where, a, b)


DESIGNS = ["ipw", "aipw", "aipw_by", "placement", "fe", "cate", "dml_panel", "debias", "ppi",
           "rdd", "rdd_dist"]


@pytest.mark.parametrize("name", DESIGNS)
def test_round_trip_every_design(results, tmp_path, name):
    est = results[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = est.save(tmp_path / f"{name}.gcr")
    skipped = [w for w in caught if issubclass(w.category, NotSavedWarning)]
    back = gc.load(path)
    assert type(back) is type(est)
    parts = list(zip(est, back)) if isinstance(est, EstimateSet) else [(est, back)]
    assert not skipped, [str(w.message) for w in skipped]
    if name == "cate":
        # the fitted scikit-learn models (est.fitted) are not in the safe format: a NotSaved
        # marker in their place, without a warning; every other field exact
        assert isinstance(back.fitted, NotSaved) and "CateModel" in str(back.fitted)
    for e, b in parts:
        for f in dataclasses.fields(Estimate):
            a_val, b_val = getattr(e, f.name), getattr(b, f.name)
            if f.name == "fitted" and name == "cate":
                continue
            assert_same(a_val, b_val, f"{name}.{f.name}")
        pd.testing.assert_frame_equal(e.tidy(), b.tidy(), check_exact=True)
        if e.curve is not None:
            pd.testing.assert_frame_equal(e.curve, b.curve, check_exact=True)
        assert str(e.summary()) == str(b.summary())
        assert e.influence is None or not b.influence.flags.writeable
    if isinstance(est, EstimateSet):
        assert back.names == est.names
        assert_same(dict(est.diagnostics), dict(back.diagnostics))
    # pickle round-trips too
    again = pickle.loads(pickle.dumps(est))
    assert type(again) is type(est)
    first = est[0] if isinstance(est, EstimateSet) else est
    pd.testing.assert_frame_equal((again[0] if isinstance(again, EstimateSet) else again).tidy(),
                                  first.tidy(), check_exact=True)


@pytest.mark.parametrize("name,spec", [("ipw", {"cluster": "unit"}), ("aipw", {"cluster": "g"}),
                                       ("fe", "iid"), ("fe", "hetero"),
                                       ("placement", "hetero"), ("dml_panel", {"cluster": "g"}),
                                       ("cate", {"cluster": "g"})])
def test_with_vcov_after_load_equals_before(results, tmp_path, name, spec):
    est = results[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = gc.load(est.save(tmp_path / "e.gcr"))
        a, b = est.with_vcov(spec), back.with_vcov(spec)
    pd.testing.assert_frame_equal(a.vcov, b.vcov, check_exact=True)
    assert (a.vcov_type, a.dof, a.n_clusters) == (b.vcov_type, b.dof, b.n_clusters)


def test_refusals_survive_load(results, tmp_path):
    for name in ("debias", "rdd_dist"):
        back = gc.load(results[name].save(tmp_path / f"{name}.gcr"))
        with pytest.raises(gc.DesignError):
            back.with_vcov({"cluster": "g"})


def test_exotic_values_round_trip(tmp_path):
    idx = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", None])
    diag = {
        "nan": float("nan"), "inf": -np.inf, "big": 2**70, "np_int": np.int32(7),
        "np_float": np.float32(0.5), "np_bool": np.bool_(True), "tuple": (1, "x", None),
        "set": {3, 1}, "nested": {"proxy": MappingProxyType({"a": 1}), 2: [1.5, {"z": None}]},
        "strings": np.array(["a", "bc"]), "obj": np.array([1, "a", None], dtype=object),
        "frame": pd.DataFrame({"i": pd.array([1, None], dtype="Int64"),
                               "c": pd.Categorical(["x", "y"], categories=["y", "x"]),
                               "t": pd.to_datetime(["2020-01-01", "2021-06-30"]),
                               "s": ["p", None], "f": [np.nan, 1.0]}, index=idx),
        "series": pd.Series([1.0, 2.0], index=pd.Index(["u", "v"], name="unit"), name="w"),
        "ts": pd.Timestamp("2024-05-01T12:00"), "frozen_arr": np.arange(3.0),
        "range": pd.RangeIndex(2, 10, 2, name="r"), "bytes_like": np.array([b"ab"]),
    }
    diag["frozen_arr"].setflags(write=False)
    est = Estimate.from_influence({"d": 0.1, "e": -2.0}, np.random.default_rng(0).normal(
        size=(30, 2)), diagnostics=diag, null={"e": 1.0}, provenance={"seed": 3},
        curve=pd.DataFrame({"q": [0.1, 0.5], "estimate": [1.0, 2.0]}))
    back = gc.load(est.save(tmp_path / "x.gcr"))
    for f in dataclasses.fields(Estimate):
        assert_same(getattr(est, f.name), getattr(back, f.name), f.name)
    assert isinstance(back.diagnostics["nested"]["proxy"], MappingProxyType)
    assert back.diagnostics["nested"][2][1] == {"z": None}


def test_unknown_objects_become_markers_with_one_counted_warning(tmp_path):
    class Thing:
        def __repr__(self):
            return "Thing()"

    # diagnostics refuse such objects at construction (models go in fitted=); provenance may
    # still hold one
    est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[1.0]]),
                   provenance={"a": Thing(), "b": [LinearRegression()]})
    with pytest.warns(NotSavedWarning, match=r"2 object\(s\).*provenance\['a'\]"):
        path = est.save(tmp_path / "x.gcr")
    back = gc.load(path)
    assert back.provenance["a"] == NotSaved(f"{__name__}.test_unknown_objects_become_markers_"
                                            "with_one_counted_warning.<locals>.Thing", "Thing()")
    assert back.provenance["b"][0].type_name.endswith("LinearRegression")


def test_save_refuses_overwrite_and_bad_targets(tmp_path):
    est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[1.0]]))
    p = est.save(tmp_path / "x.gcr")
    with pytest.raises(DataError, match="overwrite=True"):
        est.save(p)
    est.save(p, overwrite=True)
    with pytest.raises(DataError, match="folder"):
        est.save(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        est.save(tmp_path / "nope" / "x.gcr")
    with pytest.raises(DataError, match="no saved result"):
        gc.load(tmp_path / "missing.gcr")
    with pytest.raises(DataError, match="Estimate or EstimateSet"):
        to_bytes({"a": 1})


def _zip(doc, arrays=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("result.json", json.dumps(doc))
        for name, data in arrays:
            zf.writestr(name, data)
    return buf.getvalue()


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_files_run_no_code(tmp_path, monkeypatch):
    # the payloads are built first; then os.system is replaced by a recorder
    evil = io.BytesIO()
    np.save(evil, np.array([_Boom()], dtype=object), allow_pickle=True)
    plain_pickle = pickle.dumps(_Boom())
    calls = []
    import os

    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[1.0]]))
    good = json.loads(zipfile.ZipFile(io.BytesIO(to_bytes(est))).read("result.json"))
    # 1. a pickled object array in place of an .npy: np.load(allow_pickle=False) refuses
    doc = dict(good)
    doc["root"] = json.loads(json.dumps(good["root"]))
    doc["root"]["fields"]["diagnostics"] = {"$t": "frozen", "k": ["x"],
                                            "v": [{"$t": "nd", "f": "arrays/0.npy"}]}
    with pytest.raises(DataError, match="without running code"):
        from_bytes(_zip(doc, [("arrays/0.npy", evil.getvalue())]))
    # 2. a class outside geocausal, or a geocausal object that is not a dataclass
    for cls in ("os:system", "subprocess:Popen", "builtins:eval", "geocausal.results.io:load",
                "geocausal:__getattr__", "geocausal.results.io:NotSaved.__init__"):
        doc["root"]["fields"]["diagnostics"] = {"$t": "dc", "cls": cls, "fields": {}}
        with pytest.raises(DataError):
            from_bytes(_zip(doc))
    # 3. a plain pickle file, and a zip with a pickle inside instead of result.json
    with pytest.raises(DataError, match="not a zip"):
        from_bytes(plain_pickle)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("result.pkl", plain_pickle)
    with pytest.raises(DataError, match="no result.json"):
        from_bytes(buf.getvalue())
    # 4. wrong format, version, unknown node kinds
    for bad in ({**good, "format": "x"}, {**good, "version": 99},
                {**good, "root": {"$t": "pickle", "v": "..."}}, {**good, "root": [1, 2]}):
        with pytest.raises(DataError):
            from_bytes(_zip(bad))
    assert calls == []
