"""Estimate is read-only for real: no assignment can change what it reports (issue 14, item 4).

Also: ``tables`` (typed tables of grouped / function-valued estimands), ``fitted`` (explicit
handle to fitted models, never serialised) and ``to_dict`` that never turns objects into
strings.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from geocausal.errors import DataError
from geocausal.results.estimate import Estimate, EstimateSet
from geocausal.results.io import NotSaved, from_bytes, to_bytes
from geocausal.results.readonly import ReadOnlyFrame, ReadOnlySeries


class _Model:
    """Stands for a fitted model: not JSON-like."""

    def predict(self, x):
        return np.zeros(len(x))


def _est(**kw) -> Estimate:
    rng = np.random.default_rng(0)
    psi = rng.normal(size=(200, 2))
    gates = pd.DataFrame({"group": [1, 2, 3], "estimate": [0.1, 0.5, 0.9],
                          "std_error": [0.05, 0.06, 0.07]})
    gates["ci_low"] = gates["estimate"] - 1.96 * gates["std_error"]
    gates["ci_high"] = gates["estimate"] + 1.96 * gates["std_error"]
    curve = pd.DataFrame({"q": [0.25, 0.5, 0.75], "estimate": [1.0, 2.0, 3.0]})
    g = np.repeat(np.arange(40), 5)
    kw.setdefault("tables", {"gates": gates})
    kw.setdefault("curve", curve)
    return Estimate.from_influence({"d": 1.5, "x": -0.5}, psi, cluster_data={"g": g}, **kw)


def _report(est: Estimate) -> tuple:
    return (est.tidy().to_json(), str(est.summary()), est.conf_int().to_json(),
            json.dumps(est.to_dict(), sort_keys=True, default=str),
            est.std_errors.to_json(), est.pvalues.to_json())


MUTATIONS = {
    "params[] =": lambda e: e.params.__setitem__("d", 99.0),
    "params new key": lambda e: e.params.__setitem__("zz", 99.0),
    "params.loc": lambda e: e.params.loc.__setitem__("d", 99.0),
    "params.iloc": lambda e: e.params.iloc.__setitem__(0, 99.0),
    "params.at": lambda e: e.params.at.__setitem__("d", 99.0),
    "params.iat": lambda e: e.params.iat.__setitem__(0, 99.0),
    "params slice": lambda e: e.params.__setitem__(slice(None), 0.0),
    "params +=": lambda e: e.params.__iadd__(1.0),
    "params.index =": lambda e: setattr(e.params, "index", ["a", "b"]),
    "params.fillna inplace": lambda e: e.params.fillna(0.0, inplace=True),
    "params.update": lambda e: e.params.update(pd.Series({"d": 7.0})),
    "params del": lambda e: e.params.__delitem__("d"),
    "params.pop": lambda e: e.params.pop("d"),
    "params.to_numpy()[0] =": lambda e: e.params.to_numpy().__setitem__(0, 99.0),
    "params.values[0] =": lambda e: e.params.values.__setitem__(0, 99.0),
    "vcov[] =": lambda e: e.vcov.__setitem__("d", 0.0),
    "vcov.loc": lambda e: e.vcov.loc.__setitem__(("d", "d"), 0.0),
    "vcov.iloc": lambda e: e.vcov.iloc.__setitem__((0, 0), 0.0),
    "vcov.iat": lambda e: e.vcov.iat.__setitem__((0, 0), 0.0),
    "vcov.values": lambda e: e.vcov.values.__setitem__((0, 0), 0.0),
    "vcov.to_numpy": lambda e: e.vcov.to_numpy().__setitem__((0, 0), 0.0),
    "vcov.columns =": lambda e: setattr(e.vcov, "columns", ["a", "b"]),
    "vcov insert": lambda e: e.vcov.insert(0, "z", 1.0),
    "vcov clip inplace": lambda e: e.vcov.clip(0, 0, inplace=True),
    "null[] =": lambda e: e.null.__setitem__("d", 1.0),
    "curve[] =": lambda e: e.curve.__setitem__("estimate", 0.0),
    "curve.loc": lambda e: e.curve.loc.__setitem__((0, "estimate"), 0.0),
    "curve sort inplace": lambda e: e.curve.sort_values("q", ascending=False, inplace=True),
    "tables[] =": lambda e: e.tables.__setitem__("gates", pd.DataFrame()),
    "tables['gates'][] =": lambda e: e.tables["gates"].__setitem__("estimate", 0.0),
    "tables['gates'].iloc": lambda e: e.tables["gates"].iloc.__setitem__((0, 1), 0.0),
    "influence[0] =": lambda e: e.influence.__setitem__((0, 0), 99.0),
    "diagnostics[] =": lambda e: e.diagnostics.__setitem__("x", 1),
    "field =": lambda e: setattr(e, "params", pd.Series({"d": 0.0})),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_no_mutation_changes_what_the_estimate_reports(name):
    est = _est()
    before = _report(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' inplace deprecation notices
        try:
            MUTATIONS[name](est)
        except (DataError, ValueError, TypeError, AttributeError) as err:
            # a refusal: named where we control it, NumPy's read-only error otherwise
            assert "read-only" in str(err) or "cannot assign to field" in str(err)
    assert _report(est) == before


@pytest.mark.parametrize("name", ["params[] =", "params.loc", "params.iloc", "params +=",
                                  "vcov[] =", "vcov.loc", "curve[] =", "tables['gates'][] ="])
def test_mutation_raises_a_named_error_that_says_to_copy(name):
    with pytest.raises(DataError, match=r"read-only.*\.copy\(\)"):
        MUTATIONS[name](_est())


def test_input_frames_are_copied_not_shared():
    params = pd.Series({"d": 1.0})
    vcov = pd.DataFrame([[0.04]], index=["d"], columns=["d"])
    table = pd.DataFrame({"group": [1], "estimate": [2.0]})
    est = Estimate(params, vcov, tables={"g": table})
    params["d"] = 5.0
    vcov.iloc[0, 0] = 9.0
    table.loc[0, "estimate"] = 7.0
    assert est.params["d"] == 1.0 and est.vcov.iloc[0, 0] == 0.04
    assert est.tables["g"]["estimate"].tolist() == [2.0]


def test_copies_and_derived_objects_are_ordinary_and_writable():
    est = _est()
    p = est.params.copy()
    p["d"] = 0.0
    assert type(p) is pd.Series and est.params["d"] == 1.5
    assert type(est.params + 1) is pd.Series and type(est.vcov.copy()) is pd.DataFrame
    t = est.table("gates")
    t.loc[0, "estimate"] = -1.0
    assert type(t) is pd.DataFrame and est.tables["gates"]["estimate"].iloc[0] == 0.1
    assert est.tidy()["estimate"].tolist() == [1.5, -0.5]
    with pytest.raises(DataError, match="no table 'toc'.*'gates'"):
        est.table("toc")


@pytest.mark.parametrize("route", ["pickle", "deepcopy", "save_load", "with_vcov", "replace"])
def test_read_only_survives_every_route(route):
    est = _est()
    if route == "pickle":
        back = pickle.loads(pickle.dumps(est))
    elif route == "deepcopy":
        back = copy.deepcopy(est)
    elif route == "save_load":
        back = from_bytes(to_bytes(est))
    elif route == "with_vcov":
        est = _est(curve=None)
        back = est.with_vcov("hetero")
    else:
        from dataclasses import replace
        back = replace(est, estimand="ATT")
    assert isinstance(back.params, ReadOnlySeries) and isinstance(back.vcov, ReadOnlyFrame)
    assert isinstance(back.null, ReadOnlySeries)
    assert isinstance(back.curve, ReadOnlyFrame) or route == "with_vcov"
    assert not back.influence.flags.writeable
    with pytest.raises(DataError):
        back.params["d"] = 99.0
    with pytest.raises(DataError):
        back.vcov.iloc[0, 0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        back.influence[0, 0] = 1.0
    assert back.params.equals(est.params) and back.vcov.equals(est.vcov)
    if route != "with_vcov":
        assert back.tables["gates"].equals(est.tables["gates"])
        with pytest.raises(DataError):
            back.tables["gates"]["estimate"] = 0.0


def test_with_vcov_drops_tables_whose_bands_used_the_old_vcov():
    est = _est(curve=None)
    new = est.with_vcov({"cluster": "g"})
    assert dict(new.tables) == {}
    assert "tables['gates']" in new.diagnostics["dropped_by_with_vcov"]
    assert new.dof == 39 and est.dof is None


def test_tables_are_validated():
    p, v = pd.Series({"d": 1.0}), pd.DataFrame([[1.0]])
    with pytest.raises(DataError, match=r"tables\['m'\] must be a pandas DataFrame.*fitted="):
        Estimate(p, v, tables={"m": _Model()})
    with pytest.raises(DataError, match="non-empty strings"):
        Estimate(p, v, tables={1: pd.DataFrame()})
    with pytest.raises(DataError, match="mapping"):
        Estimate(p, v, tables=[pd.DataFrame()])
    with pytest.raises(DataError, match=r"\['conf_low'\].*\['ci_low'\]"):
        Estimate(p, v, tables={"g": pd.DataFrame({"estimate": [1.0], "conf_low": [0.0]})})
    with pytest.raises(DataError, match="only one of 'ucb_low' and 'ucb_high'"):
        Estimate(p, v, tables={"g": pd.DataFrame({"estimate": [1.0], "ucb_low": [0.0]})})
    with pytest.raises(DataError, match=r"tables\['g'\]\['estimate'\] must be numeric"):
        Estimate(p, v, tables={"g": pd.DataFrame({"estimate": ["1.0"]})})
    with pytest.raises(DataError, match="curve must be a pandas DataFrame"):
        Estimate(p, v, curve=[1, 2])


def test_fitted_is_a_handle_never_compared_shown_or_serialised():
    model = _Model()
    est = _est(fitted=model)
    assert est.fitted is model
    d = est.to_dict()
    assert "fitted" not in d and "not_serialised" not in d
    assert "_Model" not in json.dumps(d) and "_Model" not in repr(est)
    assert d["tables"]["gates"][0] == pytest.approx(
        {"group": 1, "estimate": 0.1, "std_error": 0.05, "ci_low": 0.1 - 1.96 * 0.05,
         "ci_high": 0.1 + 1.96 * 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitted models are left out without a warning
        back = from_bytes(to_bytes(est))
    assert isinstance(back.fitted, NotSaved) and "_Model" in back.fitted.type_name
    assert pickle.loads(pickle.dumps(est)).fitted.predict([1, 2]).shape == (2,)


def test_models_in_diagnostics_are_refused_at_construction():
    for diags, where in [({"model": _Model()}, "diagnostics['model']"),
                         ({"nested": {"m": _Model(), "k": 1}}, "diagnostics['nested']['m']"),
                         ({"f": pd.DataFrame({"m": [_Model()]})}, "diagnostics['f']['m'][0]")]:
        with pytest.raises(DataError, match=r"not data.*" + re.escape(where) + r".*fitted="):
            _est(diagnostics=diags)
    ok = {"auc": 0.7, "frame": pd.DataFrame({"a": [1.0], "s": ["x"]}), "when": pd.Timestamp(0),
          "nested": {"k": (1, 2)}, "arr": np.arange(2)}
    d = _est(diagnostics=ok).to_dict()["diagnostics"]
    assert d == {"auc": 0.7, "frame": {"a": [1.0], "s": ["x"]},
                 "when": "1970-01-01T00:00:00", "nested": {"k": [1, 2]}, "arr": [0, 1]}


def test_to_dict_never_turns_objects_into_strings():
    est = _est(provenance={"learner": _Model(), "seed": 3, "nested": {"m": _Model(), "k": 1}})
    d = est.to_dict()
    assert d["provenance"] == {"seed": 3, "nested": {"k": 1}}
    assert [s.split(" ")[0] for s in d["not_serialised"]] == [
        "provenance['learner']", "provenance['nested']['m']"]
    assert all("_Model" in s for s in d["not_serialised"])
    text = json.dumps({k: v for k, v in d.items() if k != "not_serialised"})
    assert "_Model" not in text and "object at 0x" not in text
    s = EstimateSet((est, _est()), ("a", "b"), diagnostics={"m": _Model()}).to_dict()
    assert s["not_serialised"][0].startswith("diagnostics['m']") and "m" not in s["diagnostics"]
    json.dumps(s)


def test_old_saved_results_without_new_fields_still_load():
    est = _est(tables={})
    blob = to_bytes(est)
    import io
    import zipfile
    zin = zipfile.ZipFile(io.BytesIO(blob))
    doc = json.loads(zin.read("result.json"))
    del doc["root"]["fields"]["tables"], doc["root"]["fields"]["fitted"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, json.dumps(doc) if name == "result.json" else zin.read(name))
    back = from_bytes(out.getvalue())
    assert dict(back.tables) == {} and back.fitted is None
    assert back.params.equals(est.params) and isinstance(back.params, ReadOnlySeries)
    doc["root"]["fields"]["unknown"] = 1
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, json.dumps(doc) if name == "result.json" else zin.read(name))
    with pytest.raises(DataError, match="expects"):
        from_bytes(out.getvalue())


def test_fe_passes_its_residual_degrees_of_freedom():
    import geocausal as gc
    rng = np.random.default_rng(1)
    n_units, n_t = 30, 4
    df = pd.DataFrame({"unit": np.repeat(np.arange(n_units), n_t),
                       "t": np.tile(np.arange(n_t), n_units)})
    df["d"] = rng.normal(size=len(df))
    df["x"] = rng.normal(size=len(df))
    df["y"] = 0.5 * df["d"] + df["x"] + rng.normal(size=len(df))
    est = gc.fe("y ~ d + x | unit + t", df, vcov="iid")
    # n - k - absorbed levels: 120 - 2 - (30 + 4 - 1)
    assert est.dof == 120 - 2 - 33
    import statsmodels.formula.api as smf
    ols = smf.ols("y ~ d + x + C(unit) + C(t)", df).fit()
    assert est.dof == int(ols.df_resid)
    assert est.std_errors["d"] == pytest.approx(ols.bse["d"], rel=1e-8)
    assert est.pvalues["d"] == pytest.approx(ols.pvalues["d"], rel=1e-6)


def test_readonly_series_aligns_by_label_never_by_position():
    from geocausal.results.readonly import readonly_series
    s = readonly_series(pd.Series({"a": 1.0, "b": 2.0}), index=["b", "a"])
    assert s.to_dict() == {"b": 2.0, "a": 1.0}
    with pytest.raises(DataError, match="no entry for labels"):
        readonly_series(pd.Series({"a": 1.0}), index=["b"])
    est = Estimate(pd.Series({"d": 1.0, "x": 2.0}), np.eye(2), null={"x": 0.5, "d": 0.25})
    assert est.null.to_dict() == {"d": 0.25, "x": 0.5}
    back = pickle.loads(pickle.dumps(est))
    assert back.null.to_dict() == {"d": 0.25, "x": 0.5} and isinstance(back.null, ReadOnlySeries)


def test_read_only_error_is_a_data_error_and_a_type_error():
    from geocausal.results.readonly import ReadOnlyError
    est = _est()
    for attempt in (lambda: est.params.__setitem__("d", 0.0),
                    lambda: est.diagnostics.__setitem__("x", 1),
                    lambda: est.tables["gates"].loc.__setitem__((0, "estimate"), 0.0)):
        with pytest.raises(ReadOnlyError) as info:
            attempt()
        assert isinstance(info.value, DataError) and isinstance(info.value, TypeError)
