"""The paper's own steps, shared by the synthetic world and the real-data path.

- :func:`cnn_effects`: AIPW whose propensity is a CNN learned end to end from the
  pre-treatment chips (and the tabular covariates), as the paper's ``AnalyzeImageConfounding``
  does, with influence-function SEs; the salience maps of that propensity (gradient of its
  logit with respect to the pixels) come back in the estimate's diagnostics.
- :func:`pooled_cells`: funder x sector cells with sectors pooled into groups so that every
  cell holds at least ``min_cell`` units (cell sizes reported), estimated together and
  adjusted for multiplicity (Holm, Benjamini-Hochberg) by ``EstimateSet.tidy``.
- :func:`predicted_panel_fe`: the outcome panel predicted from imagery (a cross-fitted
  regressor of the outcome on image features of its own period, then a prediction for every
  unit and period), and unit + period fixed effects on that predicted panel.
- :func:`placement_tests`: cross-validated placement AUCs of image-only, tabular-only and
  combined models per funder, each tested against 0.5 (the Estimate's null).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import geocausal as gc
from geocausal.errors import DataError, DiagnosticWarning


def cnn_learner(cfg: dict, seed: int):
    """The paper's learned image propensity: a small CNN (``ImageLearner``)."""
    from geocausal.nuisance.image_learner import ImageLearner

    c = cfg.get("cnn", {})
    return ImageLearner(encoder="cnn", epochs=int(c.get("epochs", 8)),
                        widths=tuple(c.get("widths", (8, 16))),
                        embed_dim=int(c.get("embed_dim", 16)),
                        batch_size=int(c.get("batch_size", 64)), seed=seed)


def cnn_effects(formula: str, data: pd.DataFrame, chips: np.ndarray, cfg: dict, seed: int,
                outcome_learner, *, vcov="hetero", by=None):
    """AIPW with a CNN propensity learned from ``chips`` (rows aligned with ``data``)."""
    chips = np.asarray(chips, np.float32)
    if chips.ndim != 4 or chips.shape[0] != len(data):
        raise DataError(f"cnn_effects needs chips (N, H, W, C) with N = {len(data)} rows of the "
                        f"data; got shape {chips.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        return gc.aipw(formula, data.reset_index(drop=True), images=chips, by=by,
                       learners={"propensity": cnn_learner(cfg, seed),
                                 "outcome": outcome_learner},
                       folds=cfg["folds"], seed=seed, trim=cfg["trim"], vcov=vcov)


def save_salience(est, path: Path, title: str) -> bool:
    """The salience figure of a CNN-propensity estimate; False when there is none."""
    from geocausal.results.plot import save
    from geocausal.results.plot_ipw import salience_plot

    sal = est.diagnostics.get("salience") if hasattr(est, "diagnostics") else None
    if not isinstance(sal, dict):
        return False
    save(salience_plot(est, title=title), path)
    return True


def pool_sectors(data: pd.DataFrame, funder: str, sector: str, groups: dict[str, list[str]],
                 min_cell: int) -> pd.Series:
    """Sector groups per unit (``groups``: group -> sectors; unlisted sectors go to 'other').

    Within each funder, while a cell holds fewer than ``min_cell`` units and the funder has
    more than one cell, the smallest cell is merged into the next smallest; merged cells are
    named 'pooled'. A funder with fewer than ``min_cell`` units in all keeps one (small) cell.
    """
    lookup = {s: g for g, ss in groups.items() for s in ss}
    grp = data[sector].astype(str).map(lambda s: lookup.get(s, "other")).to_numpy(object)
    fund = data[funder].astype(str).to_numpy()
    for f in np.unique(fund):
        m = fund == f
        while True:
            size = pd.Series(grp[m]).value_counts().sort_values(kind="stable")
            if len(size) < 2 or size.iloc[0] >= min_cell:
                break
            a, b = size.index[0], size.index[1]
            grp[m & np.isin(grp, [a, b])] = "pooled"
    return pd.Series(grp, index=data.index, name="sector_group")


def pooled_cells(formula: str, data: pd.DataFrame, images, cfg: dict, seed: int, lrn: dict,
                 *, funder: str = "funder", sector: str = "sector", treat: str = "d",
                 truth: pd.Series | None = None) -> pd.DataFrame:
    """Image-aware AIPW per funder x sector group, Holm/BH-adjusted, with cell sizes."""
    groups = cfg["sector_groups"]
    min_cell = int(cfg["min_cell"])
    data = data.reset_index(drop=True).copy()
    images = images.reset_index(drop=True) if isinstance(images, pd.DataFrame) else images
    if data.loc[data[treat] == 0, sector].isna().all():
        # controls carry no sector (real data): each cell compares its treated units with all
        # the controls, so the controls are repeated once per cell (cells are fitted apart)
        treated = data[data[treat] == 1]
        grp = pool_sectors(treated, funder, sector, groups,
                           min_cell=int(cfg.get("min_treated", 20)))
        parts = []
        for g in sorted(grp.unique()):
            idx = np.concatenate([treated.index[grp == g], data.index[data[treat] == 0]])
            parts.append(pd.Series(g, index=idx))
        lab = pd.concat(parts)
        data = data.loc[lab.index].assign(sector_group=lab.to_numpy()).reset_index(drop=True)
        images = images.loc[lab.index].reset_index(drop=True) if isinstance(
            images, pd.DataFrame) else images
    else:
        data["sector_group"] = pool_sectors(data, funder, sector, groups, min_cell)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        est = gc.aipw(formula, data, images=images, by=[funder, "sector_group"], learners=lrn,
                      folds=cfg["folds"], seed=seed, trim=cfg["trim"])
    t = est.tidy()  # EstimateSet.tidy: p_holm and p_bh over the cells
    key = data[[funder, "sector_group"]].astype(str).agg(" x ".join, axis=1)
    t["n_units"] = [int((key == g).sum()) for g in t.model]
    t["n_treated"] = [int(data.loc[key == g, treat].sum()) for g in t.model]
    if truth is not None:
        t["truth"] = [float(truth[(key == g).to_numpy()].mean()) for g in t.model]
    return t


def predicted_panel(features_by_period: dict, y: np.ndarray, train_period, cfg: dict,
                    seed: int) -> tuple[dict, float]:
    """Cross-fitted predictions of the outcome from image features, for every period.

    The regressor learns ``y`` (observed at ``train_period``) from the features of that
    period; each unit's predictions at every period come from the fold model that did not
    see it. Returns ``{period: predictions}`` and the out-of-fold R^2 at ``train_period``.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y, float)
    Xtr = np.asarray(features_by_period[train_period], float)
    out = {p: np.empty(len(y)) for p in features_by_period}
    for tr, te in KFold(cfg["folds"], shuffle=True, random_state=seed).split(Xtr):
        m = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        m.fit(Xtr[tr], y[tr])
        for p, X in features_by_period.items():
            out[p][te] = m.predict(np.asarray(X, float)[te])
    r2 = 1 - np.mean((out[train_period] - y) ** 2) / np.var(y)
    return out, float(r2)


def predicted_panel_fe(pred: dict, units: pd.Series, d: np.ndarray, start: np.ndarray,
                       cluster: str = "unit"):
    """Unit + period FE on the predicted panel: treated = d and period >= the unit's start."""
    rows = []
    for p, v in pred.items():
        rows.append(pd.DataFrame({"unit": units.to_numpy(), "period": p, "y_hat": v,
                                  "treated": (np.asarray(d) == 1) & (float(p) >= start)}))
    panel = pd.concat(rows, ignore_index=True)
    panel["treated"] = panel["treated"].astype(int)
    if panel["treated"].nunique() < 2:
        raise DataError("the predicted panel has no treated (or no untreated) unit-period; "
                        "the imagery periods must straddle the projects' start years")
    return gc.fe("y_hat ~ treated | unit + period", panel, vcov={"cluster": cluster}), panel


def placement_tests(data: pd.DataFrame, xs: list[str], images, cfg: dict, seed: int,
                    prop_learner, by: str = "funder") -> pd.DataFrame:
    """Placement AUCs (image-only, tabular-only, both) per ``by`` group, tested against 0.5."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        plc = gc.placement(f"d ~ {' + '.join(xs)}", data, images=images, by=by,
                           learners={"propensity": prop_learner}, folds=cfg["folds"],
                           seed=seed)
    t = plc.tidy()
    t["null"] = 0.5
    return t


def rectified_fe(pred: dict, truth: dict, units: pd.Series, d: np.ndarray, start: np.ndarray,
                 labelled: np.ndarray) -> pd.DataFrame:
    """Fixed effects on the predicted panel, debiased with a labelled subsample.

    The imagery-predicted outcome carries the prediction's errors into the FE estimate (an
    effect the images do not show is attenuated). The prediction-powered correction
    (Angelopoulos et al. 2023, for a regression coefficient) adds to the FE estimate on the
    predicted panel of the *unlabelled* units the rectifier ``FE(truth) - FE(prediction)`` of
    the *labelled* units (e.g. the surveyed clusters, whose outcome is known every period).
    The two unit sets are disjoint, so the variances add. Returns one row per estimator:
    ``predicted`` (all units), ``truth_labelled`` (the labelled units' own panel) and
    ``ppi`` (the corrected estimate), with SEs clustered by unit and normal 95% intervals.
    """
    from scipy import stats

    labelled = np.asarray(labelled, bool)
    if labelled.sum() < 10 or (~labelled).sum() < 10:
        raise DataError(f"rectified_fe needs at least 10 labelled and 10 unlabelled units; got "
                        f"{int(labelled.sum())} and {int((~labelled).sum())}")

    def fe(values: dict, mask: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            est, _ = predicted_panel_fe({p: np.asarray(v)[mask] for p, v in values.items()},
                                        units[mask], np.asarray(d)[mask],
                                        np.asarray(start)[mask])
        return float(est.params.iloc[0]), float(est.std_errors.iloc[0])

    all_units = np.ones(len(units), bool)
    rows = {"predicted": fe(pred, all_units), "truth_labelled": fe(truth, labelled)}
    p_unl, se_unl = fe(pred, ~labelled)
    p_lab, _ = fe(pred, labelled)
    # the rectifier's SE: FE of (truth - prediction) on the labelled units
    resid = {p: np.asarray(truth[p]) - np.asarray(pred[p]) for p in pred}
    r_est, r_se = fe(resid, labelled)
    assert np.isclose(r_est, rows["truth_labelled"][0] - p_lab)  # FE is linear in the outcome
    rows["ppi"] = (p_unl + r_est, float(np.hypot(se_unl, r_se)))
    z = stats.norm.ppf(0.975)
    return pd.DataFrame([{"method": k, "estimate": v, "std_error": s, "conf_low": v - z * s,
                          "conf_high": v + z * s, "n_units": int(n)}
                         for (k, (v, s)), n in zip(rows.items(),
                                                   (len(units), labelled.sum(), len(units)))])
