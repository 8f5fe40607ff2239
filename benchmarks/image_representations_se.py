"""Where the default's standard error falls short on the semi-synthetic suite, and what was tried.

Issue 12 asks the default (``gc.aipw(..., images=chips)``) for 95% coverage in [0.92, 0.98]; the
recorded suite (``image_representations_mc.md``) has 0.89-0.90 on (a)-(c) with a bias a third of
the SE, and an influence-function SE 0.82-0.90 of the spread of the estimates. Every draw of the
suite knows its true nuisances, so this script splits the default's error and its variance:

- the AIPW score with the estimated nuisances is ``s_hat = s_true + delta``, where ``s_true``
  uses the true ones; the error is ``mean(s_true) - truth`` (what the true nuisances leave)
  plus ``D = mean(delta)``;
- ``D = P + N``: ``P`` is the mean of ``delta``'s expectation given the fits and the units
  (the product of the nuisance errors, the part that biases), ``N`` the rest;
- within one draw, ``var(s_hat) = var(s_true) + var(delta) + 2 cov(s_true, delta)``: the
  influence-function variance is ``var(s_hat) / n``.

and it measures what a standard error would have to see, with the alternatives tried:

- ``fold``: the variance of the nuisance fits estimated from the disagreement of the ``K``
  cross-fitting fits at each unit (each fit, except the unit's own out-of-fold one, predicts
  it; for fits that share ``(K - 2) / (K - 1)`` of their training rows the variance of one fit
  is ``K - 1`` times the variance across them), added to the influence-function variance
  through the AIPW score's first-order terms;
- ``hajek``: AIPW with the inverse-propensity residual weights normalised within each arm;
- ``prop+l2+hgb``: the propensity stacked over a library that adds a ridge (L2) logistic
  regression and gradient-boosted trees to the default's lasso logistic regression, per
  candidate;
- ``--bootstrap B``: a bootstrap that refits the whole default stack on ``B`` resamples of the
  units (drawn within each arm; a unit drawn twice stays in one fold); with ``--resample
  half``, on ``B`` half-samples (half of each arm, without replacement) instead.

    .venv/bin/python benchmarks/image_representations_se.py --chips /tmp/irmc --reps 25 \
        --workers 2                                   # decomposition and the alternatives
    .venv/bin/python benchmarks/image_representations_se.py --chips /tmp/irmc --reps 25 \
        --folds 10 --mechanisms a_composition --workers 2 --out /tmp/se_k10.csv
    .venv/bin/python benchmarks/image_representations_se.py --chips /tmp/irmc --bootstrap 20 \
        --reps 4 --mechanisms a_composition --workers 2

``--chips`` is a folder written by ``image_representations_mc.py --export-chips``. Writes
``--out`` (``.csv`` of the draws; default ``benchmarks/image_representations_se.csv``, or
``..._bootstrap.csv`` / ``..._half.csv``) and prints the summary tables; ``--summarise CSV`` prints them again
from a written ``.csv``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import image_representations_mc as mc  # noqa: E402

Z = 1.959963984540054


# ----------------------------------------------------------------------------- pure parts
def aipw_scores(y, d, e, mu0, mu1, clip: float = 0.01) -> np.ndarray:
    """The AIPW (ATE) score of every unit (:func:`geocausal.designs.ipw.aipw_ate`'s estimate
    plus its influence function), propensities clipped to ``[clip, 1 - clip]``."""
    from geocausal.designs.ipw import aipw_ate

    theta, psi = aipw_ate(y, d, np.clip(e, clip, 1 - clip) if clip else e, mu0, mu1)
    return theta + psi


def hajek_aipw(y, d, e, mu0, mu1, clip: float = 0.01) -> tuple[float, float]:
    """AIPW with the residual weights normalised within each arm, and its influence SE."""
    e = np.clip(e, clip, 1 - clip) if clip else e
    w1, w0 = d / e, (1 - d) / (1 - e)
    r1 = (w1 * (y - mu1)).sum() / w1.sum()
    r0 = (w0 * (y - mu0)).sum() / w0.sum()
    theta = float(np.mean(mu1 - mu0) + r1 - r0)
    phi = mu1 - mu0 + w1 * (y - mu1 - r1) - w0 * (y - mu0 - r0)
    return theta, float(phi.std() / np.sqrt(len(y)))


def decompose(y, d, est: dict, true: dict, clip: float = 0.01) -> dict:
    """Split the AIPW error with estimated nuisances ``est`` (keys e, mu0, mu1) against the
    true ones ``true``: ``tn`` (true-nuisance AIPW minus the truth is ``tn - truth``), ``D``,
    its parts ``P`` and ``N``, and the within-draw variances (each over ``n``).

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 200
    >>> e = rng.uniform(0.2, 0.8, n); d = (rng.uniform(size=n) < e).astype(float)
    >>> y = d + rng.normal(size=n); t = {"e": e, "mu0": np.zeros(n), "mu1": np.ones(n)}
    >>> h = {"e": np.clip(e + 0.05, 0, 1), "mu0": np.full(n, 0.1), "mu1": np.full(n, 0.9)}
    >>> r = decompose(y, d, h, t)
    >>> bool(np.isclose(r["D"], r["P"] + r["N"])), bool(np.isclose(r["theta"], r["tn"] + r["D"]))
    (True, True)
    """
    sh = aipw_scores(y, d, est["e"], est["mu0"], est["mu1"], clip)
    st = aipw_scores(y, d, true["e"], true["mu0"], true["mu1"], clip)
    e = np.clip(est["e"], clip, 1 - clip) if clip else est["e"]
    E, M0, M1, m0, m1 = true["e"], true["mu0"], true["mu1"], est["mu0"], est["mu1"]
    # E[delta | fits, x]: the outcome errors weighted by how far the propensity is off
    cond = (m1 - M1) * (1 - E / e) - (m0 - M0) * (1 - (1 - E) / (1 - e))
    delta = sh - st
    n = len(y)
    return {"theta": float(sh.mean()), "se": float(sh.std() / np.sqrt(n)),
            "tn": float(st.mean()), "D": float(delta.mean()), "P": float(cond.mean()),
            "N": float(delta.mean() - cond.mean()), "var_true": float(st.var() / n),
            "var_hat": float(sh.var() / n), "var_delta": float(delta.var() / n),
            "cov2": float(2 * np.cov(st, delta, bias=True)[0, 1] / n)}


def fold_fit_variance(A: np.ndarray, fold_ids: np.ndarray) -> np.ndarray:
    """Variance of one cross-fitting fit at each unit, from the disagreement of the fits that
    do not hold it out. ``A[k, i]`` is the prediction at unit ``i`` of the fit that left out
    fold ``k`` (sorted fold ids); for fits sharing ``(K - 2) / (K - 1)`` of their training rows
    the variance of one fit is ``K - 1`` times the variance across them.

    Examples
    --------
    >>> A = np.array([[1.0, 5.0, 4.0], [2.0, 5.0, 4.0], [3.0, 7.0, 4.0]])
    >>> fold_fit_variance(A, np.array([0, 2, 1])).tolist()  # unit 0: fits 1, 2: var 0.5 x 2
    [1.0, 0.0, 0.0]
    """
    ks = np.unique(fold_ids)
    own = fold_ids[None, :] == ks[:, None]
    other = np.ma.masked_array(A, own)
    return (len(ks) - 1) * other.var(0, ddof=1).filled(np.nan)


def fold_corrected_se(se, y, d, e, mu0, mu1, var_e, var_mu0, var_mu1, clip: float = 0.01
                      ) -> tuple[float, float, float]:
    """The influence-function SE ``se`` plus the fit variances carried by the score's
    first-order terms: ``(se, outcome part, propensity part)`` (the parts are variances over
    ``n``)."""
    n = len(y)
    e = np.clip(e, clip, 1 - clip) if clip else e
    out = (var_mu1 * (1 - d / e) ** 2 + var_mu0 * (1 - (1 - d) / (1 - e)) ** 2).mean() / n
    prop = (var_e * (d * (y - mu1) ** 2 / e ** 4
                     + (1 - d) * (y - mu0) ** 2 / (1 - e) ** 4)).mean() / n
    return float(np.sqrt(se ** 2 + out + prop)), float(out), float(prop)


def resample_rows(d: np.ndarray, seed: int, b: int, half: bool = False) -> np.ndarray:
    """Rows of resample ``b``, drawn within each arm: as many units as the arm has, with
    replacement (a bootstrap resample; no resample loses an arm), or with ``half`` half of
    them (rounded down) without replacement. For a mean, the variance of a half-sample's
    estimate around the whole sample's is the whole sample's variance (the finite-population
    factor 1 - m/n is 1/2), so the spread of half-sample refits needs no rescaling.

    Examples
    --------
    >>> d = np.array([0, 0, 0, 1, 1]); r = resample_rows(d, 0, 1)
    >>> len(r), int(d[r].sum())
    (5, 2)
    >>> d = np.array([0, 0, 0, 0, 1, 1, 1]); r = resample_rows(d, 0, 1, half=True)
    >>> len(r), int(d[r].sum()), len(np.unique(r))
    (3, 1, 3)
    """
    rng = np.random.default_rng([seed, b, 78 if half else 77])
    arms = [np.flatnonzero(d == a) for a in (0, 1)]
    if half:
        return np.sort(np.concatenate([rng.choice(u, len(u) // 2, replace=False)
                                       for u in arms]))
    return np.concatenate([rng.choice(u, len(u)) for u in arms])


def grouped_folds(rows: np.ndarray, d: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Folds of a resample: stratified folds of its distinct units, so that copies of a unit
    are never in its own training folds.

    Examples
    --------
    >>> f = grouped_folds(np.array([0, 0, 1, 2, 3, 3, 4, 5]), np.array([0, 1, 0, 1, 0, 1]), 2, 0)
    >>> bool(f[0] == f[1] and f[4] == f[5])
    True
    """
    from geocausal.nuisance.crossfit import make_folds

    uid, inv = np.unique(rows, return_inverse=True)
    return np.asarray(make_folds(len(uid), k, seed, stratify=d[uid]))[inv]


# ----------------------------------------------------------------------------- the stack, fit by fit
def _fold_fits(learner, X, y, fold_ids, *, proba=False, arm=None, pooled_d=None):
    """``(K, n)`` predictions of each fold's fit at every unit (``pooled_d``: a PooledArms
    estimator, giving a pair for the two arms)."""
    from sklearn.base import clone

    ks = np.unique(fold_ids)
    n = len(y)
    if pooled_d is not None:
        A0, A1 = np.empty((len(ks), n)), np.empty((len(ks), n))
        for j, f in enumerate(ks):
            tr = fold_ids != f
            fit = clone(learner).fit(np.column_stack([pooled_d[tr], X[tr]]), y[tr])
            A0[j] = fit.predict(np.column_stack([np.zeros(n), X]))
            A1[j] = fit.predict(np.column_stack([np.ones(n), X]))
        return A0, A1
    A = np.empty((len(ks), n))
    for j, f in enumerate(ks):
        tr = (fold_ids != f) if arm is None else (fold_ids != f) & arm
        fit = clone(learner).fit(X[tr], y[tr])
        A[j] = fit.predict_proba(X)[:, 1] if proba else fit.predict(X)
    return A


def stack_fold_fits(cands: dict, y, d, fold_ids, propensity, outcome: dict,
                    extra_propensity: dict | None = None) -> dict:
    """The default stack (:func:`geocausal.nuisance.stacking.stack_nuisances`) rebuilt fit by
    fit: per nuisance, the stacked out-of-fold prediction and the ``(K, n)`` stacked
    predictions of every fold's fit (the fold-wise weights applied to each fold's fits);
    ``extra_propensity`` adds propensity learners to the library (key ``e_extra``)."""
    from geocausal.nuisance.stacking import PooledArms, _targets, convex_weights

    ks = np.unique(fold_ids)
    own = fold_ids[None, :] == ks[:, None]
    lib: dict[str, dict[str, np.ndarray]] = {"e": {}, "mu0": {}, "mu1": {}, "e_extra": {}}
    dd = d.astype(float)
    for c, X in cands.items():
        lib["e"][c] = _fold_fits(propensity, X, d.astype(int), fold_ids, proba=True)
        for name, lrn in (extra_propensity or {}).items():
            lib["e_extra"][f"{c}/{name}"] = _fold_fits(lrn, X, d.astype(int), fold_ids,
                                                       proba=True)
        for name, lrn in outcome.items():
            if isinstance(lrn, PooledArms):
                lib["mu0"][f"{c}/{name}"], lib["mu1"][f"{c}/{name}"] = _fold_fits(
                    lrn.estimator, X, y, fold_ids, pooled_d=dd)
            else:
                for k, a in (("mu0", d == 0), ("mu1", d == 1)):
                    lib[k][f"{c}/{name}"] = _fold_fits(lrn, X, y, fold_ids, arm=a)
    targets = _targets(y, d)
    out = {}
    for k, src in (("e", "e"), ("mu0", "mu0"), ("mu1", "mu1"), ("e_extra", "e")):
        if not lib[k]:
            continue
        rows, target, kind = targets[src]
        fits = lib[k] if k != "e_extra" else {**lib["e"], **lib["e_extra"]}
        A = np.stack(list(fits.values()), -1)              # K x n x L
        P = (A * own[..., None]).sum(0)                    # out-of-fold, n x L
        SA = np.empty(A.shape[:2])
        for f in ks:
            other = rows & (fold_ids != f)
            w = convex_weights(P[other], target[other], kind)
            SA[:, fold_ids == f] = A[:, fold_ids == f] @ w
        out[k] = ((SA * own).sum(0), SA)
    return out


# ----------------------------------------------------------------------------- one draw
def _extra_propensity(seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geocausal.nuisance.candidates import PenalisedLogit

    return {"l2": make_pipeline(StandardScaler(), PenalisedLogit(
                Cs=np.logspace(-4, -1, 5), cv=3, l1_ratios=(0.0,), solver="lbfgs",
                scoring="neg_log_loss", max_iter=2000, random_state=seed)),
            "hgb": HistGradientBoostingClassifier(
                max_iter=100, max_bins=63, early_stopping=True, validation_fraction=0.1,
                n_iter_no_change=10, random_state=seed)}


def decompose_job(job: tuple[str, int]) -> list[dict]:
    """Every variant of one draw (the default's own fits, refitted fit by fit)."""
    from geocausal.nuisance.candidates import stack_learners
    from geocausal.nuisance.crossfit import make_folds

    mech, seed = job
    df, cands = mc.draw_candidates(mech, seed)
    y, d = df["y"].to_numpy(), df["d"].to_numpy()
    clip = mc._STATE.get("clip", 0.01)
    folds = np.asarray(make_folds(len(d), mc._STATE.get("folds", 5), seed, stratify=d))
    lrn = stack_learners(seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        S = stack_fold_fits(cands, y, d, folds, lrn["propensity"], lrn["outcome"],
                            _extra_propensity(seed))
    wall = time.perf_counter() - t0
    est = {k: S[k][0] for k in ("e", "mu0", "mu1")}
    true = {"e": df["e_true"].to_numpy(), "mu0": df["mu0_true"].to_numpy(),
            "mu1": df["mu1_true"].to_numpy()}
    truth = float(df["cate"].mean())
    base = dict(mechanism=mech, seed=seed, truth=truth, wall=wall,
                folds=int(len(np.unique(folds))))
    dec = decompose(y, d, est, true, clip)
    rows = [{**base, "variant": "default", "est": dec["theta"], "se": dec["se"], **dec}]
    V = {k: fold_fit_variance(S[k][1], folds) for k in ("e", "mu0", "mu1")}
    se_f, part_out, part_prop = fold_corrected_se(dec["se"], y, d, est["e"], est["mu0"],
                                                  est["mu1"],
                                                  V["e"], V["mu0"], V["mu1"], clip)
    e_c = np.clip(est["e"], clip, 1 - clip)
    rows.append({**base, "variant": "fold", "est": dec["theta"], "se": se_f,
                 "fold_outcome": part_out, "fold_propensity": part_prop,
                 "fitvar_mu1": float(V["mu1"].mean()),
                 "mse_mu1": float(((est["mu1"] - true["mu1"]) ** 2).mean()),
                 "outcome_weighted_mse": float((((est["mu1"] - true["mu1"]) ** 2)
                                                * (1 - d / e_c) ** 2 + ((est["mu0"] - true["mu0"])
                                                ** 2) * (1 - (1 - d) / (1 - e_c)) ** 2).mean()
                                               / len(y))})
    th, se = hajek_aipw(y, d, est["e"], est["mu0"], est["mu1"], clip)
    rows.append({**base, "variant": "hajek", "est": th, "se": se})
    e_lib = S["e_extra"][0]
    dec2 = decompose(y, d, {**est, "e": e_lib}, true, clip)
    rows.append({**base, "variant": "prop+l2+hgb", "est": dec2["theta"], "se": dec2["se"],
                 **dec2})
    return rows


def bootstrap_job(job: tuple[str, int, int]) -> dict:
    """The default stack refitted on resample ``b`` (``b = -1``: the draw itself): a bootstrap
    resample or, with ``--resample half``, a half-sample."""
    from geocausal.nuisance.candidates import stack_learners
    from geocausal.nuisance.stacking import stack_nuisances

    mech, seed, b = job
    df, cands = mc.draw_candidates(mech, seed)
    y, d = df["y"].to_numpy(), df["d"].to_numpy()
    rows = (np.arange(len(y)) if b < 0
            else resample_rows(d, seed, b, half=mc._STATE.get("resample") == "half"))
    folds = grouped_folds(rows, d, 5, seed + 10 * (b + 1))
    lrn = stack_learners(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stack_nuisances({k: v[rows] for k, v in cands.items()}, y[rows], d[rows], folds,
                              lrn["propensity"], lrn["outcome"])
    s = aipw_scores(y[rows], d[rows], res.e, res.mu0, res.mu1, mc._STATE.get("clip", 0.01))
    return dict(mechanism=mech, seed=seed, b=b, est=float(s.mean()),
                se=float(s.std() / np.sqrt(len(s))), truth=float(df["cate"].mean()))


# ----------------------------------------------------------------------------- summaries
def summary(df: pd.DataFrame) -> str:
    """Per mechanism and variant, bias, SD, mean SE, SE / SD and coverage, and the
    decomposition of the default's error."""
    df = df.assign(err=df.est - df.truth)
    df["covered"] = df.err.abs() <= Z * df.se
    g = df.groupby(["mechanism", "variant"], sort=False)
    t = g.agg(draws=("err", "size"), bias=("err", "mean"), sd=("err", "std"),
              se=("se", "mean"), coverage=("covered", "mean"))
    t["se/sd"] = t.se / t.sd
    lines = [t.round(4).to_string()]
    dft = df[df.variant == "default"]
    dd = dft.groupby("mechanism").agg(
        D_mean=("D", "mean"), D_sd=("D", "std"), P_sd=("P", "std"), N_sd=("N", "std"),
        tn_sd=("tn", "std"), var_true=("var_true", "mean"), var_hat=("var_hat", "mean"),
        var_delta=("var_delta", "mean"), cov2=("cov2", "mean"))
    dd["var_D_across"] = dft.groupby("mechanism").D.var()
    dd["2cov_across"] = dft.groupby("mechanism").apply(
        lambda x: 2 * np.cov(x.tn, x.D)[0, 1], include_groups=False)
    lines += ["", dd.round(5).to_string()]
    fold = df[df.variant == "fold"]
    if len(fold):
        f = fold.groupby("mechanism")[["fold_outcome", "fold_propensity", "fitvar_mu1",
                                       "mse_mu1", "outcome_weighted_mse"]].mean()
        f["var_delta"] = dd["var_delta"]
        lines += ["", f.round(5).to_string()]
    return "\n".join(lines)


def bootstrap_summary(df: pd.DataFrame) -> str:
    """Per draw, the influence-function SE, the SD of the refitted estimates and
    their ratio."""
    out = []
    for (m, s), g in df.groupby(["mechanism", "seed"]):
        own = g[g.b < 0]
        reps = g[g.b >= 0].est
        if own.empty or len(reps) < 2:
            continue
        o = own.iloc[0]
        out.append(dict(mechanism=m, seed=s, B=len(reps), error=o.est - o.truth, se=o.se,
                        refit_sd=reps.std(ddof=1), ratio=reps.std(ddof=1) / o.se))
    return pd.DataFrame(out).round(3).to_string(index=False) if out else "(no draw complete)"


def main(argv: list[str] | None = None) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from geocausal.parallel import ScriptParser, worker_count

    ap = ScriptParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarise", type=Path, default=None,
                    help="print the summary of a .csv written by an earlier run and stop")
    ap.add_argument("--chips", type=Path, default=None,
                    help="a folder written by image_representations_mc.py --export-chips")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--workers", type=worker_count, default=1)
    ap.add_argument("--mechanisms", default=",".join(mc.MECHANISMS))
    ap.add_argument("--bootstrap", type=int, default=0,
                    help="refit bootstrap with this many resamples per draw (0: decompose)")
    ap.add_argument("--resample", choices=("bootstrap", "half"), default="bootstrap",
                    help="with --bootstrap B: B bootstrap resamples, or B half-samples (half of "
                         "each arm without replacement)")
    ap.add_argument("--folds", type=int, default=5,
                    help="cross-fitting folds of the decomposition (the suite's: 5)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.summarise:
        df = pd.read_csv(a.summarise)
        print(bootstrap_summary(df) if "b" in df else summary(df))
        return 0
    if a.chips is None:
        ap.error("--chips is required (a folder written by image_representations_mc.py "
                 "--export-chips)")
    mechs = [m.strip() for m in a.mechanisms.split(",") if m.strip()]
    if (any(m not in mc.MECHANISMS for m in mechs) or a.reps < 1 or a.bootstrap < 0
            or a.folds < 2):
        ap.error(f"--mechanisms from {mc.MECHANISMS}; --reps >= 1; --bootstrap >= 0; "
                 "--folds >= 2")
    out = a.out or HERE / (f"image_representations_se_{a.resample}.csv" if a.bootstrap
                           else "image_representations_se.csv")
    state = mc.load(a.chips, False)
    from geocausal.vocabulary import DEFAULTS

    state["clip"] = DEFAULTS.clip
    state["folds"] = a.folds
    state["resample"] = a.resample
    if a.bootstrap:
        jobs = [(m, s, b) for m in mechs for s in range(a.reps) for b in range(-1, a.bootstrap)]
        fn = bootstrap_job
    else:
        jobs = [(m, s) for s in range(a.reps) for m in mechs]
        fn = decompose_job
    t0 = time.perf_counter()
    rows: list[dict] = []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn"), initializer=mc._init,
                             initargs=(state,)) as ex:
        for i, r in enumerate(ex.map(fn, jobs)):
            rows.extend(r if isinstance(r, list) else [r])
            if (i + 1) % 8 == 0 or i + 1 == len(jobs):
                pd.DataFrame(rows).to_csv(out, index=False)
                print(f"{i + 1}/{len(jobs)} jobs, {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    print(bootstrap_summary(df) if a.bootstrap else summary(df))
    print(f"wall {time.perf_counter() - t0:.0f} s on {a.workers} workers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
