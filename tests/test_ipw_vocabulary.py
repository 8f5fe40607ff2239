"""The one vocabulary in the weighting faces (issue 14): learner slots and aliases, fold specs,
the option object, deprecated keywords, placement's vcov, the clip default."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import DataError, DesignError, DiagnosticWarning, OptionError
from geocausal.folds import Folds, make_folds

FORMULA = "y ~ d + x1 + x2"
LIN = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
PROP = {"propensity": LogisticRegression()}


def _data(n: int = 400, seed: int = 0, strength: float = 0.8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    e = 1 / (1 + np.exp(-strength * (x[:, 0] - 0.5 * x[:, 1])))
    d = rng.binomial(1, e)
    df = pd.DataFrame(x, columns=["x1", "x2"])
    df["d"], df["e"] = d, e
    df["y"] = 2.0 * d + x @ [1.0, 0.5] + rng.normal(size=n)
    df["village"] = rng.integers(0, 40, n)
    return df


def _same(a, b) -> None:
    assert float(a.params.iloc[0]) == pytest.approx(float(b.params.iloc[0]), abs=1e-12)
    assert float(a.std_errors.iloc[0]) == pytest.approx(float(b.std_errors.iloc[0]), abs=1e-12)


@pytest.mark.parametrize(("face", "learners"), [
    ("aipw", {"propensity": LogisticRegression(), "outcom": LinearRegression()}),
    ("ipw", {"propensity": LogisticRegression(), "outcome": LinearRegression()}),
    ("balance", {"propensty": LogisticRegression()}),
    ("placement", {"images": LogisticRegression()}),
])
def test_unknown_or_unused_slot_is_an_option_error(face, learners):
    df = _data(120)
    formula = "d ~ x1 + x2" if face == "placement" else FORMULA
    bad = next(k for k in learners if k != "propensity")
    with pytest.raises(OptionError, match=f"{face} has no learner slot '{bad}'"):
        getattr(gc, face)(formula, df, learners=learners)


def test_doubleml_aliases_equal_the_slot_names():
    df = _data()
    named = gc.aipw(FORMULA, df, learners=LIN)
    alias = gc.aipw(FORMULA, df, learners={"ml_m": LogisticRegression(), "ml_g": LinearRegression()})
    _same(named, alias)
    _same(gc.ipw(FORMULA, df, learners=PROP), gc.ipw(FORMULA, df, learners={"ml_m": LogisticRegression()}))
    with pytest.raises(OptionError, match="given twice"):
        gc.aipw(FORMULA, df, learners={"propensity": LogisticRegression(), "ml_m": LogisticRegression()})


def test_placement_image_alias_and_bootstrap_vcov():
    df = _data(300, 1)
    img = df[["x1"]].to_numpy() + np.random.default_rng(0).normal(size=(len(df), 1))
    kw = dict(images=img, folds=3)
    a = gc.placement("d ~ x2", df, learners={"propensity": LogisticRegression(),
                                             "image_propensity": LogisticRegression(C=0.01)}, **kw)
    b = gc.placement("d ~ x2", df, learners={"propensity": LogisticRegression(),
                                             "image": LogisticRegression(C=0.01)}, **kw)
    c = gc.placement("d ~ x2", df, learners=PROP, **kw)
    assert a.params.equals(b.params)
    assert a.params["auc_image"] != c.params["auc_image"]  # the image slot is used
    boot = gc.placement("d ~ x2", df, learners=PROP, vcov="bootstrap", n_boot=200, **kw)
    with pytest.warns(FutureWarning, match=r"ci=.*vcov='bootstrap'"):
        old = gc.placement("d ~ x2", df, learners=PROP, ci="bootstrap", n_boot=200, **kw)
    assert boot.vcov_type == old.vcov_type == "bootstrap"
    np.testing.assert_array_equal(boot.vcov.to_numpy(), old.vcov.to_numpy())
    # the DeLong matrix stays reachable, equal to a DeLong fit; other strings are refused
    np.testing.assert_allclose(boot.with_vcov("delong").vcov.to_numpy(), c.vcov.to_numpy(),
                               rtol=0, atol=1e-15)
    assert not np.allclose(boot.vcov.to_numpy(), c.vcov.to_numpy())
    with pytest.raises(DataError, match="HC1"):
        gc.placement("d ~ x2", df, learners=PROP, vcov="HC1", **kw)
    assert inspect.signature(gc.placement).parameters["n_boot"].default == 999


def test_fold_specs_and_deprecated_fold_groups():
    df = _data(400, 2)
    ids = make_folds(len(df), 5, seed=0, groups=df.village.to_numpy())
    spec = gc.aipw(FORMULA, df, learners=LIN, folds=Folds.group("village", k=5))
    arr = gc.aipw(FORMULA, df, learners=LIN, folds=ids)
    labels = gc.aipw(FORMULA, df, learners=LIN, folds=Folds.group(df.village.to_numpy(), k=5))
    with pytest.warns(FutureWarning, match=r"folds=gc\.Folds\.group"):
        old = gc.aipw(FORMULA, df, learners=LIN, fold_groups="village")
    for other in (arr, labels, old):
        _same(spec, other)
    plain = gc.aipw(FORMULA, df, learners=LIN, folds=5)
    assert plain.params["d"] != spec.params["d"]
    # Folds specs work within by= subgroups (labels given as arrays are subset per group)
    df["g"] = np.where(df.x2 > 0, "a", "b")
    res = gc.aipw(FORMULA, df, learners=LIN, by="g",
                  folds=Folds.group(df.village.to_numpy(), k=3))
    sub = df[df.g == "a"].reset_index(drop=True)
    one = gc.aipw(FORMULA, sub, learners=LIN, folds=Folds.group("village", k=3))
    _same(res["a"], one)
    with pytest.raises(DataError, match="Folds.group"):
        gc.aipw(FORMULA, df, learners=LIN, folds="village")


def test_option_object_dict_and_deprecated_keywords_agree():
    df = _data(300, 3)
    img = np.random.default_rng(1).normal(size=(len(df), 4))
    obj = gc.aipw(FORMULA, df, learners=LIN, images=img,
                  options=gc.IPWOptions(n_pcs=2, stabilized=False))
    dct = gc.aipw(FORMULA, df, learners=LIN, images=img, options={"n_pcs": 2, "stabilized": False})
    with pytest.warns(FutureWarning, match=r"aipw\(n_pcs=\.\.\.\) is deprecated"):
        old = gc.aipw(FORMULA, df, learners=LIN, images=img, n_pcs=2, stabilized=False)
    for est in (dct, old):
        _same(obj, est)
        pd.testing.assert_frame_equal(obj.diagnostics["balance"], est.diagnostics["balance"])
    assert list(obj.diagnostics["balance"]["term"])[-2:] == ["image_pc1", "image_pc2"]
    assert obj.diagnostics["stabilized_weights"] is False
    with pytest.raises(OptionError, match="has no field 'npcs'"):
        gc.aipw(FORMULA, df, options={"npcs": 2})
    with pytest.raises(OptionError, match="missing_images='skip'"):
        gc.IPWOptions(missing_images="skip")
    with pytest.raises(OptionError, match="n_pcs must be an integer"):
        gc.IPWOptions(n_pcs=-1)
    with pytest.raises(OptionError, match=r"aipw\(\) has no option 'alpha'"):
        gc.aipw(FORMULA, df, alpha=0.1)
    for face in (gc.aipw, gc.ipw, gc.balance, gc.placement):
        params = inspect.signature(face).parameters
        assert len(params) <= 15, face.__name__
        assert all(p.kind is not p.VAR_KEYWORD for p in params.values())


def test_estimand_any_case_and_refused_otherwise():
    df = _data(300, 4)
    _same(gc.aipw(FORMULA, df, learners=LIN, estimand="att"),
          gc.aipw(FORMULA, df, learners=LIN, estimand="ATT"))
    assert gc.ipw(FORMULA, df, propensity="e", estimand="Att").estimand == "ATT"
    with pytest.raises(OptionError, match="estimand='ATC' is not one of 'ATE', 'ATT'"):
        gc.aipw(FORMULA, df, estimand="ATC")


def test_clip_default_is_doubleml_threshold_and_counted():
    """Default clip 0.01 equals clipping by hand; None keeps the old (unclipped) numbers."""
    df = _data(600, 5, strength=4.0)
    e = np.clip(df.e.to_numpy(), 1e-4, 1 - 1e-4)
    n_small = int(((e < 0.01) | (e > 0.99)).sum())
    assert n_small > 0
    # clipping is counted and said: a DiagnosticWarning with the count (none when nothing is)
    with pytest.warns(DiagnosticWarning, match=rf"^{n_small} propensities are outside "
                      r"\[0.01, 0.99\] \(\d+ of them treated\) and were clipped"):
        default = gc.ipw(FORMULA, df, propensity=e)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        by_hand = gc.ipw(FORMULA, df, propensity=np.clip(e, 0.01, 0.99), clip=None)
        gc.ipw(FORMULA, df, propensity=np.clip(e, 0.02, 0.98))  # nothing left to clip
    _same(default, by_hand)
    assert default.diagnostics["n_clipped"] == n_small
    with pytest.warns(DiagnosticWarning, match="propensities are below 0.01"):
        raw = gc.ipw(FORMULA, df, propensity=e, clip=None)
    assert raw.diagnostics["n_clipped"] == 0
    assert raw.params["d"] != default.params["d"]
    # given propensities of exactly 0 or 1 are refused, not clipped
    e01 = e.copy()
    e01[:2] = 0.0
    with pytest.raises(DesignError, match="2 propensities are <= 0"):
        gc.ipw(FORMULA, df, propensity=e01)
    with pytest.raises(OptionError, match="clip must be a number strictly between 0.0 and 0.5"):
        gc.ipw(FORMULA, df, propensity=e, clip=0.5)
    # trimming comes first (on the estimated propensities), clipping bounds what is kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        tr = gc.ipw(FORMULA, df, propensity=e, trim=0.05)
    assert tr.diagnostics["n_trimmed"] > 0 and tr.diagnostics["n_clipped"] == 0
