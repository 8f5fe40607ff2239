"""gc.rdd: input forms, options, diagnostics, bad input, geography and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.api.rdd import outcome_quantiles
from geocausal.designs.rdd.diagnostics import density_test
from geocausal.designs.rdd.estimator import fit_r3d
from geocausal.designs.rdd.options import Bandwidth, Checks, Inference
from geocausal.designs.rdd.quantiles import unit_quantiles
from geocausal.designs.rdd.simulate import simulate
from geocausal.errors import DataError, DesignError, DiagnosticWarning, OptionError

GRID = np.arange(1, 10) / 10


@pytest.fixture(scope="module")
def sim():
    x, Y = simulate("dgp1", 400, 30, delta=2.0, seed=3)
    return x, Y


def _fast(n_boot=200, **kw):
    return dict(q_grid=GRID, inference=Inference(n_boot=n_boot),
                checks=Checks(density_test=False), **kw)


_QUICK = dict(inference=Inference(n_boot=200), checks=Checks(density_test=False))


def test_input_forms_agree(sim):
    x, Y = sim
    samples = list(Y)
    a = gc.rdd(outcome=samples, running=x, **_fast())
    Q = unit_quantiles(samples, GRID)
    b = gc.rdd(outcome=Q, running=x, **_fast())
    c = gc.rdd(outcome={"values": samples, "weights": [np.ones(30)] * len(x)}, running=x, **_fast())
    df = pd.DataFrame({"x": x, "y": samples})
    d = gc.rdd("y ~ 1", df, running="x", **_fast())

    class Dist:  # the shape of a per-unit distributions result
        quantiles = Q
        q_grid = GRID

    e = gc.rdd(outcome=Dist(), running=x, **_QUICK)

    class Pixels:  # geocausal.data.distributions.PixelDistributions without samples
        grid = GRID
        quantiles = Q
        values = None
        weights = None

    f = gc.rdd(outcome=Pixels(), running=x, **_QUICK)

    class PixelSamples(Pixels):  # with samples: requantiled on the grid asked for
        values = tuple(samples)
        weights = tuple(np.ones(30) for _ in samples)

    h = gc.rdd(outcome=PixelSamples(), running=x, **_fast())
    for other in (b, c, d, e, f, h):
        np.testing.assert_allclose(other.curve.estimate, a.curve.estimate, atol=1e-12)
    assert set(a.params.index) == {"mean", "variance", "gini"}
    assert list(a.curve.columns) == ["quantile", "estimate", "std_error", "conf_low",
                                     "conf_high", "uniform_low", "uniform_high"]
    # the effect on the mean is the delta of DGP1 (2); sd ~0.07 at n=400 -> 5 sd tolerance
    assert a.params["mean"] == pytest.approx(2.0, abs=0.35)


def test_weighted_samples_change_quantiles():
    Q = unit_quantiles([np.array([0.0, 1.0, 2.0])], np.array([0.5]),
                       weights=[np.array([1.0, 1.0, 6.0])])
    assert Q[0, 0] > 1.0


def test_seed_reproducible_and_cluster(sim):
    x, Y = sim
    df = pd.DataFrame({"x": x, "y": list(Y), "g": np.arange(len(x)) // 4})
    a = gc.rdd("y ~ 1", df, running="x", seed=5, **_fast())
    b = gc.rdd("y ~ 1", df, running="x", seed=5, **_fast())
    pd.testing.assert_frame_equal(a.curve, b.curve)
    cl = gc.rdd("y ~ 1", df, running="x", vcov={"cluster": "g"}, seed=5, **_fast())
    assert cl.vcov_type == "cluster(g)"
    np.testing.assert_allclose(cl.curve.estimate, a.curve.estimate)
    assert not np.allclose(cl.curve.std_error, a.curve.std_error)


def test_scalar_cli_call_and_options(sim):
    x, Y = sim
    df = pd.DataFrame({"x": x + 1.0, "y": Y.mean(axis=1)})
    # the keywords the command line passes
    est = gc.rdd("y ~ 1", df, running="x", cutoff=1.0, seed=0, vcov="hetero",
                 inference={"n_boot": 200})
    assert est.curve.shape[0] == 1 and est.estimand == "QTE"
    assert est.params["mean"] == pytest.approx(2.0, abs=0.5)
    assert "p_density" in est.diagnostics
    for kw in ({"method": "frechet"}, {"bandwidth": "cer"}, {"bandwidth": {"per_side": True}},
               {"bandwidth": Bandwidth(kernel="uniform", p=1)},
               {"bandwidth": {"bias_correction": "explicit"}},
               {"inference": {"studentize": False, "n_boot": 100}},
               {"inference": {"multiplier": "rademacher", "n_boot": 100}}):
        e = gc.rdd("y ~ 1", df, running="x", cutoff=1.0, checks={"density_test": False}, **kw)
        assert np.isfinite(e.params["mean"])
    bw = select = gc.rdd(outcome=list(Y), running=x, bandwidth={"per_side": True}, **_fast())
    h = bw.diagnostics["bandwidths"]
    assert not np.allclose(h.h_plus, h.h_minus)
    del select


def _fuzzy_data(n, first_stage, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    t = (rng.uniform(size=n) < 0.1 + first_stage * (x >= 0)).astype(float)
    return rng, x, t


def test_fuzzy_delta_method_matches_rdrobust():
    """The fuzzy delta-method SE against a peer: rdrobust's fuzzy RD on a point-mass outcome.

    Conventional local-linear fit at a common bandwidth (h_den = h): rdrobust's variance of the
    Wald ratio is the same linearisation, so estimate and SE agree to rounding, for every vce.
    """
    import warnings

    from rdrobust import rdrobust as rdr

    rng, x, t = _fuzzy_data(800, 0.8, 0)
    y = 5 + x + 2 * t + rng.normal(size=x.size)
    df = pd.DataFrame({"x": x, "y": y, "d": t})
    for vce in ("hc0", "hc2", "hc3"):
        est = gc.rdd("y ~ d", df, running="x",
                     bandwidth=gc.Bandwidth(p=1, kernel="triangular", h=0.5, h_den=0.5,
                                            bias_correction="implicit"),
                     inference=gc.Inference(n_boot=50, residuals=vce),
                     checks=gc.Checks(density_test=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = rdr(y, x, fuzzy=t, h=0.5, p=1, kernel="tri", vce=vce)
        assert est.estimand.startswith("LQTE")
        assert est.params["mean"] == pytest.approx(float(ref.coef.iloc[0, 0]), abs=1e-8)
        assert est.std_errors["mean"] == pytest.approx(float(ref.se.iloc[0, 0]), rel=1e-8)
        assert est.curve.std_error[0] == pytest.approx(float(ref.se.iloc[0, 0]), rel=1e-8)
    # the delta-method SE is not the SE of the reduced form divided by the jump
    sharp = gc.rdd("y ~ 1", df, running="x",
                   bandwidth=gc.Bandwidth(p=1, kernel="triangular", h=0.5,
                                          bias_correction="implicit"),
                   inference=gc.Inference(n_boot=50, residuals="hc0"),
                   checks=gc.Checks(density_test=False))
    jump = est.diagnostics["first_stage_jump"]
    assert abs(est.std_errors["mean"] - sharp.std_errors["mean"] / jump) > 0.01


def test_fuzzy_distributional_ratio():
    rng, x, t = _fuzzy_data(800, 0.8, 0)
    samples = [rng.normal(5 + x[i] + 2 * t[i], 1, 30) for i in range(x.size)]
    df = pd.DataFrame({"x": x, "y": samples, "d": t})
    est = gc.rdd("y ~ d", df, running="x", **_fast())
    assert est.diagnostics["first_stage_jump"] == pytest.approx(0.8, abs=0.2)
    assert est.diagnostics["first_stage_t"] > 5 and not est.diagnostics["weak_first_stage"]
    # Wald ratio of the effect 2; the fuzzy se is ~0.3 here, 4 se tolerance
    assert est.params["mean"] == pytest.approx(2.0, abs=1.2)


def test_weak_first_stage_warns():
    """No jump in take-up: the ratio is noise; a named, counted warning and the t in diagnostics."""
    from geocausal.errors import WeakInstrumentWarning

    rng, x, t = _fuzzy_data(400, 0.0, 5)
    df = pd.DataFrame({"x": x, "y": 1 + x + 2 * t + rng.normal(size=x.size), "d": t})
    with pytest.warns(WeakInstrumentWarning, match=r"F = .* < 10\) over \d+ units"):
        est = gc.rdd("y ~ d", df, running="x", **_fast(n_boot=50))
    assert abs(est.diagnostics["first_stage_t"]) < np.sqrt(10)
    assert est.diagnostics["first_stage_F"] == pytest.approx(
        (est.diagnostics["first_stage_jump"] / est.diagnostics["first_stage_se"]) ** 2)
    assert est.diagnostics["weak_first_stage"]


@pytest.mark.parametrize("kw,match", [
    ({'inference': {'alpha': 1.5}}, 'alpha'),
    ({'inference': {'alpha': 0.0}}, 'alpha'),
    ({'inference': {'alpha': '0.05'}}, 'alpha'),
    ({'inference': {'n_boot': 0}}, 'n_boot'),
    ({'inference': {'n_boot': 10.5}}, 'n_boot'),
    ({'bandwidth': {'p': -1}}, 'p='),
    ({'bandwidth': {'p': 1.5}}, 'p='),
    ({'bandwidth': {'s': -1}}, 's='),
    ({'bandwidth': {'kernel': 'gaussian'}}, 'kernel'),
    ({'bandwidth': {'h': -0.3}}, 'h has'),
    ({'bandwidth': {'h': 0.0}}, 'h has'),
    ({'bandwidth': {'h': {'plus': 0.4}}}, 'plus'),
    ({'bandwidth': {'h': {'plus': 0.4, 'minus': np.nan}}}, 'minus'),
    ({'bandwidth': {'h_den': -1.0}}, 'h_den'),
    ({'bandwidth': {'b': 0.0}}, 'b has'),
    ({'bandwidth': {'donut': -0.1}}, 'donut'),
    ({'inference': {'multiplier': 'gauss'}}, 'multiplier'),
    ({'inference': {'tests': ('nullity', 'sup')}}, 'tests'),
    ({'inference': {'tests': 'nullity'}}, 'tests'),
    ({'inference': {'functionals': ('median',)}}, 'functionals'),
    ({'inference': {'test_range': (0.8, 0.2)}}, 'test_range'),
    ({'inference': {'test_range': (0.0, 1.0)}}, 'test_range'),
    ({'q_grid': [0.5, 0.2]}, 'increasing'),
    ({'q_grid': [0.0, 0.5]}, 'q_grid'),
    ({'method': 'linear'}, 'method'),
    ({'inference': {'residuals': 'hc4'}}, 'residuals'),
    ({'bandwidth': {'bias_correction': 'yes'}}, 'bias_correction'),
    ({'inference': {'studentize': 'yes'}}, 'studentize'),
    ({'seed': -1}, 'seed'),
    ({'seed': 1.5}, 'seed'),
    ({'cutoff': np.nan}, 'cutoff'),
    ({'checks': {'sensitivity': [0.0, 1.0]}}, 'sensitivity'),
    ({'checks': {'donuts': [-0.1]}}, 'donuts'),
    ({'bandwidth': {'rearrangement': 'spline'}}, 'rearrangement'),
    ({'inference': {'small_sample': 'kr'}}, 'small_sample'),
    ({'bandwidth': 'silverman'}, 'bandwidth'),
])
def test_every_option_is_validated(sim, kw, match):
    x, Y = sim
    opts = {"q_grid": GRID, "inference": {"n_boot": 20}, "checks": {"density_test": False}}
    for key, value in kw.items():    # merge the bad field into the option objects
        opts[key] = {**opts[key], **value} if isinstance(opts.get(key), dict) else value
    with pytest.raises(OptionError if "q_grid" not in kw else DataError, match=match):
        gc.rdd(outcome=list(Y[:, :5]), running=x, **opts)


def test_tests_size_and_power(sim):
    x, Y = sim
    est = gc.rdd(outcome=list(Y), running=x, **_fast())
    assert est.diagnostics["p_nullity"] < 0.01          # delta = 2, tiny se
    assert est.diagnostics["p_dominance"] > 0.05        # tau > 0: no evidence against FOSD
    x0, Y0 = simulate("dgp1", 400, 30, delta=0.0, seed=4)
    null = gc.rdd(outcome=list(Y0), running=x0, **_fast())
    assert null.diagnostics["p_homogeneity"] > 0.001
    fun = est.table("functionals").set_index("functional")
    assert list(fun.columns) == ["estimate", "std_error", "ci_low", "ci_high", "p_value"]
    assert fun.loc["mean", "p_value"] < 0.01


def test_diagnostics_placebo_donut_sensitivity(sim):
    x, Y = sim
    est = gc.rdd(outcome=list(Y), running=x, q_grid=GRID, inference={"n_boot": 200},
                 checks=Checks(density_test=False, placebo=[-0.5, 0.5], sensitivity=[0.75, 1.5],
                               donuts=[0.05]), bandwidth={"donut": 0.01})
    pl = est.diagnostics["placebo"]
    assert list(pl.cutoff) == [-0.5, 0.5]
    # no jump at the placebo cutoffs: effects far smaller than the true jump of 2
    assert np.all(np.abs(pl.mean_effect) < 1.0)
    sens = est.diagnostics["sensitivity"]
    assert np.all(np.abs(sens.mean_effect - 2.0) < 0.5)
    assert est.diagnostics["donut"].n_dropped[0] > 0


def test_density_test_detects_manipulation():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 2000)
    bunched = np.r_[x, rng.uniform(0, 0.1, 300)]
    assert density_test(bunched)["p_value"] < 0.001
    assert density_test(x)["p_value"] > 0.001


def test_bad_input(sim):
    x, Y = sim
    samples = list(Y)
    with pytest.raises(DesignError, match="within bandwidth"):
        fit_r3d(x, unit_quantiles(samples, GRID), GRID, h=1e-3)
    with pytest.raises(DesignError, match="no units on the right"):
        gc.rdd(outcome=samples, running=x - 5, **_fast())
    with pytest.raises(DataError, match="empty"):
        gc.rdd(outcome=[np.array([])] + samples[1:], running=x, **_fast())
    bad = [s.copy() for s in samples]
    bad[3][0] = np.nan
    with pytest.raises(DataError, match="unit 3"):
        gc.rdd(outcome=bad, running=x, **_fast())
    xn = x.copy()
    xn[0] = np.nan
    with pytest.raises(DataError, match="running"):
        gc.rdd(outcome=samples, running=xn, **_fast())
    const = [np.full(5, 1.0)] + samples[1:]
    with pytest.warns(DiagnosticWarning, match="constant"):
        gc.rdd(outcome=const, running=x, **_fast())
    with pytest.warns(DiagnosticWarning, match="mass points"):
        gc.rdd(outcome=samples, running=np.round(x, 2) + 0.005, **_fast())
    with pytest.raises(DataError, match="q_grid"):
        outcome_quantiles(samples, [0.0, 0.5])
    with pytest.raises(DesignError, match="first-stage"):
        fit_r3d(x, unit_quantiles(samples, GRID), GRID, T=np.ones_like(x), h=0.5)


def test_by_groups_and_plots(sim, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from geocausal.results import plot_rdd

    x, Y = sim
    df = pd.DataFrame({"x": x, "y": list(Y), "grp": np.where(np.arange(len(x)) % 2, "a", "b")})
    res = gc.rdd("y ~ 1", df, running="x", by="grp", **_fast())
    # one by= helper for every design (api._by.fit_by): subgroups in sorted order
    assert res.names == ("a", "b") and len(res.tidy()) == 6
    est = res["a"]
    plot_rdd.effect_plot(est, truth=2.0)
    plot_rdd.quantile_functions_plot(est)
    plot_rdd.rd_plot(est, quantiles=(0.1, 0.9))
    plot_rdd.bandwidth_plot(est)


def test_signed_distance_polygon_and_line():
    import geopandas as gpd
    from shapely.geometry import LineString, Point, box

    pts = gpd.GeoDataFrame(geometry=[Point(5, 5), Point(12, 5), Point(5, -3)], crs=32633)
    d = gc_signed = __import__("geocausal.api.rdd_geo", fromlist=["x"]).signed_distance
    poly = box(0, 0, 10, 10)
    np.testing.assert_allclose(d(pts, poly), [5.0, -2.0, -3.0])
    line = LineString([(0, 0), (20, 0)])
    np.testing.assert_allclose(d(pts, line, treated_side=Point(0, -1)), [-5.0, -5.0, 3.0])
    with pytest.raises(DataError, match="geographic"):
        d(pts.to_crs(4326), poly)
    del gc_signed


def test_rdd_takes_no_image_or_learner_keywords():
    from geocausal.cli import CliError, _accepted

    # the command line drops image features for rdd and refuses options it does not take
    assert "images" not in _accepted(gc.rdd, "rdd", {"images": np.zeros((3, 2)), "seed": 0})
    with pytest.raises(CliError, match=r"does not take \['folds'\]"):
        _accepted(gc.rdd, "rdd", {"folds": 5})
    with pytest.raises(TypeError, match="learners"):
        gc.rdd(outcome=[np.ones(3)], running=np.zeros(1), learners={})


def test_exact_gaussian_law_matches_explicit_multipliers(sim):
    """Draws from N(0, S'S) and explicit xi @ S give the same band up to Monte Carlo error."""
    from geocausal.designs.rdd.bootstrap import critical_value, draws, gaussian_draws

    x, Y = sim
    r = fit_r3d(x, unit_quantiles(list(Y), GRID), GRID, h=0.6)
    B = 4000
    a = np.abs(draws(r.score, np.random.default_rng(0).standard_normal((B, x.size))) / r.se)
    b = np.abs(gaussian_draws(r.score, B, seed=1) / r.se)
    ca, cb = critical_value(a.max(1), 0.05), critical_value(b.max(1), 0.05)
    # the 95% quantile of a sup-|t| has a Monte Carlo sd of about 0.03 at B = 4000
    assert abs(ca - cb) < 0.12
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.08)


@pytest.mark.parametrize("point_mass", [True, False])
def test_with_vcov_refuses_because_curve_bands_need_a_refit(sim, point_mass):
    """Item 3: the curve's pointwise and uniform bands come from the multiplier bootstrap (with
    clusters: one multiplier per cluster, G/(G-1) and t(G-1)), so no stored influence function
    can give what a refit with vcov=spec gives; with_vcov refuses with a DesignError, for
    point-mass and distribution-valued outcomes alike, and a refit does change the bands."""
    x, Y = sim
    df = pd.DataFrame({"x": x, "y": Y[:, 0] if point_mass else list(Y),
                       "g": np.arange(len(x)) // 4})
    est = gc.rdd("y ~ 1", df, running="x", **_fast())
    for spec in ({"cluster": "g"}, "hetero"):
        with pytest.raises(DesignError, match="refit"):
            est.with_vcov(spec)
    refit = gc.rdd("y ~ 1", df, running="x", vcov={"cluster": "g"}, **_fast())
    assert refit.vcov_type == "cluster(g)" and refit.dof == np.unique(df.g).size - 1
    assert not np.allclose(refit.curve.uniform_high, est.curve.uniform_high)


# --------------------------------------------------------------- issue 14: one vocabulary
def test_deprecated_flat_keywords_warn_and_give_the_same_numbers(sim):
    """The old flat keywords still work, with one FutureWarning naming the new spelling."""
    x, Y = sim
    df = pd.DataFrame({"x": x, "y": Y[:, 0]})
    new = gc.rdd("y ~ 1", df, running="x", bandwidth=Bandwidth(p=1, kernel="uniform", h=0.5),
                 inference=Inference(n_boot=100, residuals="hc0"),
                 checks=Checks(density_test=False))
    with pytest.warns(FutureWarning, match=r"vce= -> inference=gc.Inference\(residuals=") as w:
        old = gc.rdd("y ~ 1", df, running="x", p=1, kernel="uniform", h=0.5, n_boot=100,
                     vce="hc0", density_test=False)
    assert sum(issubclass(r.category, FutureWarning) for r in w) == 1
    pd.testing.assert_frame_equal(old.tidy(), new.tidy())
    pd.testing.assert_frame_equal(old.curve, new.curve)
    # an old keyword beside its option object is ambiguous: refused
    with pytest.raises(OptionError, match="given together"), pytest.warns(FutureWarning):
        gc.rdd("y ~ 1", df, running="x", n_boot=100, inference={"alpha": 0.1})


def test_option_objects_dicts_and_selector_names_agree(sim):
    x, Y = sim
    a = gc.rdd(outcome=list(Y), running=x, bandwidth=Bandwidth(selector="cer", kernel="epa"),
               **_fast())
    b = gc.rdd(outcome=list(Y), running=x, bandwidth={"selector": "CER", "kernel": "EPA"},
               **_fast())
    c = gc.rdd(outcome=list(Y), running=x, bandwidth="cer",
               q_grid=GRID, inference={"n_boot": 200}, checks={"density_test": False})
    pd.testing.assert_frame_equal(a.curve, b.curve)
    assert not np.allclose(a.curve.estimate, c.curve.estimate)   # kernel differs
    assert c.diagnostics["kernel"] == "triangular" and a.diagnostics["kernel"] == "epanechnikov"
    # string options are case-insensitive; the canonical spelling is reported
    d = gc.rdd(outcome=list(Y), running=x, method="Frechet", **_fast())
    assert d.diagnostics["method"] == "frechet"
    # n_boot's default is the shared one (999 draws)
    e = gc.rdd(outcome=list(Y), running=x, q_grid=GRID, checks={"density_test": False})
    from geocausal.vocabulary import DEFAULTS

    assert e.diagnostics["n_boot"] == DEFAULTS.n_boot == 999


@pytest.mark.parametrize("kw,err,match", [
    ({"inference": {"nboot": 10}}, OptionError, "has no option 'nboot'"),
    ({"bandwidth": 3}, OptionError, "takes a gc.Bandwidth"),
    ({"checks": Inference()}, OptionError, "takes a gc.Checks"),
    ({"learners": {}}, TypeError, "learners"),
    ({"vce": "hc0", "fold_groups": "g"}, TypeError, "fold_groups"),
    ({"vcov": "iid"}, OptionError, "iid"),
    ({"vcov": "HC1"}, OptionError, r"Inference\(residuals='hc1'\)"),
    ({"vcov": "nn"}, OptionError, "rdrobust's vce"),
    ({"vcov": "CRV3"}, DataError, "CRV3"),
    ({"vcov": {"cluster": ["g", "g2"]}}, OptionError, "one cluster variable"),
])
def test_unknown_options_and_vcov_names_are_refused(sim, kw, err, match):
    x, Y = sim
    df = pd.DataFrame({"x": x, "y": Y[:, 0], "g": np.arange(x.size) // 4,
                       "g2": np.arange(x.size) % 7})
    with pytest.raises(err, match=match):
        gc.rdd("y ~ 1", df, running="x", **{"q_grid": None, **_QUICK, **kw})


def test_by_takes_several_columns_and_array_roles(sim):
    x, Y = sim
    df = pd.DataFrame({"y": Y[:, 0], "a": np.arange(x.size) % 2, "b": np.arange(x.size) % 3 > 0})
    res = gc.rdd("y ~ 1", df, running=x, by=["a", "b"], **_QUICK)
    assert len(res.names) == 4 and res.names[0] == "0 x False"
    one = gc.rdd("y ~ 1", df[(df.a == 0) & ~df.b].reset_index(drop=True),
                 running=x[(df.a == 0).to_numpy() & ~df.b.to_numpy()], **_QUICK)
    assert res.estimates[0].params["mean"] == pytest.approx(one.params["mean"], abs=1e-12)
    with pytest.raises(DataError, match="by= needs"):
        gc.rdd(outcome=Y[:, 0], running=x, by="a", **_QUICK)


def test_public_signature_is_short_and_options_are_frozen():
    import dataclasses
    import inspect

    params = inspect.signature(gc.rdd).parameters
    assert len(params) <= 16 and "n_boot" not in params and "vce" not in params
    assert {"bandwidth", "inference", "checks", "vcov", "by"} <= set(params)
    bw = gc.Bandwidth(p=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bw.p = 2
    assert gc.Inference().n_boot == 999 and gc.Checks().density_test
