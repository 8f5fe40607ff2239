"""Features of the CATE design and its fitted model for new units: arrays in, arrays out.

* :func:`chip_features` / :func:`design_matrix`: tabular controls (formulaic) next to image
  summary features of a chip sequence in one of :data:`REPRESENTATIONS`;
* :func:`with_image_learners` / :class:`DropColumns`: raw chips for image learners, summary
  features for every other learner;
* :class:`CateModel`: the cross-fitted learner refitted on all units together with how its
  features were built, so :meth:`CateModel.effect` predicts the CATE of new rows and new
  chips through the training path (``gc.cate`` returns it as ``est.fitted``).

Examples
--------
>>> import numpy as np
>>> chips = np.zeros((3, 2, 4, 4, 2)); chips[:, 1] += 1
>>> chip_features(chips).shape
(3, 12)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from geocausal.designs.cate import REPRESENTATIONS, CateFit, default_learners
from geocausal.designs.ipw import chips_of, learner_chips
from geocausal.errors import DataError
from geocausal.features.align import ChipsView
from geocausal.features.images import align_images, image_features, summary_features
from geocausal.folds import Folds
from geocausal.vocabulary import choice, is_image_learner

__all__ = ["REPRESENTATIONS", "CateModel", "ChipRows", "DropColumns", "SharedSource", "align_folds",
           "chip_features", "clan_frame", "column_values", "control_spec", "design_matrix",
           "image_matrix", "with_image_learners"]


# ----------------------------------------------------------------------------- features
def chip_features(chips: np.ndarray | ChipsView, representation: str = "sequence",
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Summary features of chips ``(N, T, H, W, C)`` for a representation.

    ``chips`` may also be a :class:`~geocausal.features.align.ChipsView` (a chips cache
    aligned to the rows): the statistics are then computed by blocks of units.

    ``"sequence"``: per-band mean and sd at every period plus the change of each from the first
    to the last period; ``"single"``: the last period only; ``"first"``: the first period only;
    ``"summary"``: every period, no change features.

    Examples
    --------
    >>> chips = np.zeros((3, 2, 4, 4, 2)); chips[:, 1] += 1
    >>> chip_features(chips).shape, chip_features(chips, "single").shape
    ((3, 12), (3, 4))
    """
    representation = choice("representation", representation, REPRESENTATIONS, design="cate")
    if isinstance(chips, ChipsView):  # a chips cache: the statistics by blocks of units
        t = chips.shape[1] if chips.ndim == 5 else 1
        per = chips.summary_features().reshape(len(chips), t, -1)  # per period: means, SDs
        if representation in ("single", "first"):
            return per[:, -1 if representation == "single" else 0]
        flat = per.reshape(len(chips), -1)
        if representation == "summary" or t == 1:
            return flat
        return np.concatenate([flat, per[:, -1] - per[:, 0]], axis=1)
    x = np.asarray(chips, dtype=float)
    if x.ndim == 4:
        x = x[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    if representation in ("single", "first"):
        t = -1 if representation == "single" else 0
        return summary_features(x[:, t], None if mask is None else mask[:, t])
    per = summary_features(x, mask).reshape(x.shape[0], x.shape[1], -1)
    flat = per.reshape(x.shape[0], -1)
    if representation == "summary" or x.shape[1] == 1:
        return flat
    return np.concatenate([flat, per[:, -1] - per[:, 0]], axis=1)


def image_matrix(images: Any, n: int, representation: str, seed: int) -> np.ndarray | None:
    """Image features of ``n`` aligned units (chips, ``(chips, mask)``, a scale mapping, ...).

    Examples
    --------
    >>> image_matrix({"a": np.ones((2, 3, 3, 1)), "b": np.ones((2, 5, 5, 1))}, 2,
    ...              "single", 0).shape
    (2, 4)
    """
    if images is None:
        return None
    if isinstance(images, Mapping):
        # multi-scale: chips of the same sites at several sizes, features concatenated
        if not images:
            raise DataError("images= is an empty mapping; give {scale name: chips}")
        return np.concatenate([image_matrix(v, n, representation, seed)
                               for v in images.values()], axis=1)
    arr = images[0] if isinstance(images, tuple) else images
    if isinstance(arr, ChipsView) or (isinstance(arr, np.ndarray) and arr.ndim in (4, 5)):
        mask = images[1] if isinstance(images, tuple) else None
        feats = chip_features(arr, representation, mask)
        if feats.shape[0] != n:
            raise DataError(f"images have {feats.shape[0]} chips but the data have {n} rows")
        return feats
    return image_features(images, n, representation="summary", seed=seed)


def design_matrix(parsed: Any, data: pd.DataFrame, images: Any, representation: str,
                  seed: int) -> tuple[np.ndarray, list[str]]:
    """Tabular controls (formulaic) next to image features; returns the matrix and names.

    Examples
    --------
    >>> from geocausal.formula import parse_formula
    >>> df = pd.DataFrame({"y": [1.0, 2, 3], "d": [0, 1, 0], "x": [0.5, 1, 2]})
    >>> X, names = design_matrix(parse_formula("y ~ d + x", df), df, None, "sequence", 0)
    >>> X.shape, names
    ((3, 1), ['x'])
    """
    tab = parsed.control_matrix(data)
    parts, names = [tab.to_numpy(dtype=float)], list(map(str, tab.columns))
    img = image_matrix(images, len(data), representation, seed)
    if img is not None:
        parts.append(img)
        names += [f"img{j}" for j in range(img.shape[1])]
    X = np.concatenate(parts, axis=1)
    if X.shape[1] == 0:
        raise DataError("gc.cate needs effect modifiers: add controls to the formula "
                        "('y ~ d + x1 + x2') or pass images=")
    return X, names


def control_spec(parsed: Any, data: pd.DataFrame) -> Any:
    """The formulaic model spec of the controls, so new rows get the training encoding."""
    if not parsed.controls:
        return None
    from formulaic import model_matrix

    return model_matrix("0 + " + " + ".join(parsed.controls), data, na_action="raise").model_spec


def align_folds(folds: Any, aligned: Any) -> Any:
    """Per-row parts of a ``folds=`` argument (fold ids, a Folds' label array) follow the rows
    :func:`~geocausal.features.align.align_images` kept; names and integers pass through.

    Examples
    --------
    >>> from geocausal.features.align import AlignedImages
    >>> al = AlignedImages(None, pd.DataFrame(index=[0, 2]), np.array([True, False, True]))
    >>> align_folds(np.array([0, 1, 1]), al).tolist(), align_folds(5, al)
    ([0, 1], 5)
    """
    if isinstance(folds, Folds):
        if folds.by is not None and not isinstance(folds.by, str | tuple):
            return Folds(k=folds.k, kind=folds.kind, by=aligned.rows(folds.by),
                         block_size=folds.block_size, gap=folds.gap)
        return folds
    return folds if isinstance(folds, int | np.integer) else aligned.rows(folds)


def column_values(data: pd.DataFrame, value: Any, name: str) -> np.ndarray | None:
    """A role given as a column name, an array (one value per row) or a scalar, as an array.

    Examples
    --------
    >>> column_values(pd.DataFrame({"p": [0.5, 0.4]}), "p", "propensity").tolist()
    [0.5, 0.4]
    """
    if value is None or not isinstance(value, str):
        arr = None if value is None else np.asarray(value)
        if arr is not None and arr.ndim and arr.shape[0] != len(data):
            raise DataError(f"{name}= has {arr.shape[0]} rows, the data {len(data)}")
        return arr
    if value not in data.columns:
        raise DataError(f"{name}='{value}' is not a column of the data")
    return data[value].to_numpy()


def clan_frame(data: pd.DataFrame, clan: Sequence[str] | None,
               controls: Sequence[str]) -> pd.DataFrame | None:
    """CLAN covariates: the ``clan`` columns, or the formula's plain controls (None if none).

    Examples
    --------
    >>> clan_frame(pd.DataFrame({"x": [1, 2]}), None, ["x", "np.log(z)"]).columns.tolist()
    ['x']
    """
    cols = list(clan) if clan is not None else [c for c in controls if c in data.columns]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise DataError(f"clan= names columns not in the data: {missing}")
    return data[cols].astype(float).reset_index(drop=True) if cols else None


# ----------------------------------------------------------------------------- image learners
class DropColumns(BaseEstimator):
    """Fit ``estimator`` on ``X`` without the columns ``[start, stop)`` (scikit-learn meta).

    ``gc.cate`` hands image learners the raw flattened chips (dropping the summary features)
    and every other learner the summary features (dropping the raw chips).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.c_[np.arange(6.0), np.ones(6) * 9]
    >>> DropColumns(LinearRegression(), 1, 2).fit(X, 2 * X[:, 0]).predict(X[:2]).round(6).tolist()
    [0.0, 2.0]
    """

    def __init__(self, estimator: Any = None, start: int = 0, stop: int = 0):
        self.estimator = estimator
        self.start = start
        self.stop = stop

    def _cols(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        return np.concatenate([X[:, :self.start], X[:, self.stop:]], axis=1)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DropColumns:
        """Fit a clone of the estimator on the kept columns."""
        kw = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.estimator_ = clone(self.estimator).fit(self._cols(X), y, **kw)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions from the kept columns."""
        return self.estimator_.predict(self._cols(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from the kept columns."""
        return self.estimator_.predict_proba(self._cols(X))


class SharedSource:
    """A chips source that the clones of a learner share: ``sklearn.base.clone`` deep-copies
    parameters, which would copy an in-memory source or a cache handle once per fold.

    Examples
    --------
    >>> import copy
    >>> s = SharedSource("a source")
    >>> copy.deepcopy(s) is s
    True
    """

    def __init__(self, source: Any) -> None:
        self.source = source

    def __deepcopy__(self, memo: dict) -> SharedSource:
        return self

    def __repr__(self) -> str:
        return f"SharedSource(<{getattr(self.source, 'n', '?')} units>)"


class ChipRows(BaseEstimator):
    """An image learner fed from a chips source by row ids (scikit-learn meta-estimator).

    ``X``'s first column holds each row's position in ``source`` (a
    :class:`~geocausal.encoders.stream.ChipSource`, through a :class:`SharedSource`); columns
    ``[start, stop)`` are dropped and the others are tabular covariates. ``estimator`` is
    fitted on ``(source.subset(ids), tabular)``: a streaming learner (``ImageLearner``) then
    reads only those units from the cache, block by block, and every row slicing that
    cross-fitting does on ``X`` keeps chips and covariates together.

    Examples
    --------
    >>> from geocausal.encoders.stream import ChipSource
    >>> class Mean(BaseEstimator):
    ...     def fit(self, X, y):
    ...         self.n_ = X[0].n
    ...         return self
    ...     def predict(self, X):
    ...         return X[1][:, 0] * 0 + self.n_
    >>> src = SharedSource(ChipSource.of(np.zeros((5, 2, 2, 1), "float32")))
    >>> X = np.c_[np.arange(5.0), np.ones(5), np.full(5, 9.0)]
    >>> ChipRows(Mean(), src, 2, 3).fit(X[[0, 3, 4]], np.zeros(3)).predict(X[:2]).tolist()
    [3.0, 3.0]
    """

    def __init__(self, estimator: Any = None, source: SharedSource | None = None,
                 start: int = 1, stop: int = 1):
        self.estimator = estimator
        self.source = source
        self.start = start
        self.stop = stop

    def _X(self, X: Any) -> Any:
        X = np.asarray(X, dtype=float)
        ids = X[:, 0].astype(np.int64)
        if not np.array_equal(ids, X[:, 0]):
            raise DataError("the row-id column of a streamed image learner holds non-integer "
                            "values; pass the features built by gc.cate")
        tab = np.concatenate([X[:, 1:self.start], X[:, self.stop:]], axis=1)
        if self.source is None:
            raise DataError("ChipRows needs source= (a SharedSource of the chips)")
        sub = self.source.source.subset(ids)
        return sub if tab.shape[1] == 0 else (sub, tab)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ChipRows:
        """Fit a clone of the estimator on the rows' chips (streamed) and covariates."""
        kw = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.estimator_ = clone(self.estimator).fit(self._X(X), y, **kw)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of the rows, block by block."""
        return self.estimator_.predict(self._X(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the rows, block by block."""
        return self.estimator_.predict_proba(self._X(X))


def _streams(learner: Any) -> bool:
    params = learner.get_params() if hasattr(learner, "get_params") else {}
    return "block_units" in params


def with_image_learners(kind: str, learners: Mapping[str, Any], X: np.ndarray, images: Any,
                        n_summary: int, seed: int) -> tuple[np.ndarray, Mapping[str, Any], bool]:
    """Put raw chips in front of ``X`` and route columns: raw to image learners, rest to others.

    ``learners`` has canonical slot names (:func:`geocausal.vocabulary.resolve_learners`);
    image learners are those with ``uses_images = True``
    (:func:`geocausal.vocabulary.is_image_learner`). Image learners see masked pixels
    (nodata, clouds) as NaN, which the encoders leave out. Returns
    ``(X, learners, raw_chips)``.

    With ``images`` a :class:`~geocausal.features.align.ChipsView` (a chips cache, never
    loaded whole) and streaming image learners (``ImageLearner``), the front column is each
    row's position instead of its pixels and image learners become :class:`ChipRows` over
    the view's source (blocks that do not fit the learner's ``memory_budget`` are a
    :class:`~geocausal.errors.DataError` saying what to lower). A non-streaming image learner
    loads the view if it fits the budget.

    Examples
    --------
    >>> X = np.ones((4, 2))
    >>> with_image_learners("dr", {}, X, None, 0, 0)[2]
    False
    """
    image = [v for v in learners.values() if v is not None and is_image_learner(v)]
    if not image:
        return X, learners, False
    full = default_learners(kind, seed)
    full.update({s: v for s, v in learners.items() if v is not None})
    routed: dict[str, Any] = {}
    p = X.shape[1]
    if isinstance(images, ChipsView) and all(_streams(v) for v in image):
        for slot, lrn in full.items():
            if lrn is None or not is_image_learner(lrn):
                routed[slot] = None if lrn is None else DropColumns(lrn, 0, 1)
                continue
            params = lrn.get_params()
            src = images.source(params.get("block_units"), params.get("memory_budget"))
            routed[slot] = ChipRows(lrn, SharedSource(src), 1 + p - n_summary, 1 + p)
        ids = np.arange(len(images), dtype=float)[:, None]
        return np.concatenate([ids, X], axis=1), routed, True
    if isinstance(images, ChipsView):  # loaded if it fits the memory budget, else refused
        x, m = images.load()
        images = x if m is None else (x, m)
    chips = learner_chips(*chips_of(images)) if isinstance(images, tuple) else images
    chips = np.asarray(chips)
    if chips.ndim not in (4, 5):
        raise DataError("an image learner needs images= as chips (N, H, W, C) or (N, T, H, W, C)")
    raw = chips.reshape(chips.shape[0], -1).astype(float)
    k = raw.shape[1]
    for slot, lrn in full.items():
        if lrn is None:
            routed[slot] = None
        elif is_image_learner(lrn):
            lrn = clone(lrn).set_params(image_shape=tuple(chips.shape[1:]))
            routed[slot] = DropColumns(lrn, k + p - n_summary, k + p)
        else:
            routed[slot] = DropColumns(lrn, 0, k)
    return np.concatenate([raw, X], axis=1), routed, True


# ----------------------------------------------------------------------------- the model
_EFFECT_MISSING = ("drop", "error")


@dataclass(frozen=True)
class CateModel:
    """The fitted CATE model of a ``gc.cate`` result (``est.fitted``), for new units and places.

    It holds the cross-fitted learner (:class:`~geocausal.designs.cate.CateFit`, refitted on
    all units) and how features were built: the formula's control terms with formulaic's
    training encoding (levels of categorical terms, transforms), the image representation,
    whether raw chips fed an image learner. :meth:`effect` builds features of new rows and new
    chips through that same path; :meth:`predict` takes a feature matrix as built at fit time.

    ``Estimate.save`` leaves the model out (fitted scikit-learn models are not in the safe
    format); :meth:`save` writes it with joblib, which runs code when loaded: load only files
    you wrote yourself.

    Examples
    --------
    >>> import geocausal as gc
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> model = gc.cate("y ~ d + x", df, propensity=.5, options={"evaluate": False}).fitted
    >>> model.effect(pd.DataFrame({"x": [0.0, 1.0]}, index=["a", "b"])).round(0).to_dict()
    {'a': 1.0, 'b': 2.0}
    """

    fit: CateFit = field(repr=False)
    formula: str
    controls: tuple[str, ...]
    names: tuple[str, ...]
    representation: str
    images: bool
    raw_chips: bool
    multiscale: bool
    n_features: int
    control_spec: Any = field(default=None, repr=False)
    seed: int = 0
    _not_saved: ClassVar[bool] = True  # holds fitted models: never in the safe result format

    @property
    def streamed(self) -> bool:
        """Whether an image learner read the chips from a cache by row ids (:class:`ChipRows`)."""
        def has(m: Any) -> bool:
            inner = getattr(m, "models", None)
            return isinstance(m, ChipRows) or (isinstance(inner, tuple)
                                               and any(has(v) for v in inner))
        return any(has(v) for v in self.fit.models.values())

    # the CateFit interface
    @property
    def kind(self) -> str:
        """The meta-learner (``"dr"``, ``"r"``, ...)."""
        return self.fit.kind

    @property
    def models(self) -> Mapping[str, Any]:
        """Models refitted on all units."""
        return self.fit.models

    @property
    def tau(self) -> np.ndarray:
        """Out-of-fold CATE predictions of the training units."""
        return self.fit.tau

    def propensity(self, X: np.ndarray) -> np.ndarray:
        """Propensity at feature rows ``X``."""
        return self.fit.propensity(X)

    def baseline(self, X: np.ndarray) -> np.ndarray:
        """Untreated outcome ``mu0`` at feature rows ``X``."""
        return self.fit.baseline(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """CATE at feature rows ``X`` (columns as at fit time, ``n_features`` of them)."""
        X = np.asarray(X, dtype=float)
        X = X[:, None] if X.ndim == 1 else X
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"the CATE model takes {self.n_features} feature columns, got "
                            f"shape {X.shape}; build features with model.effect(data, "
                            "images=...) or model.features(...)")
        # raw chips (in front, for image learners) hold masked pixels as NaN
        raw = self.n_features - len(self.names) if self.raw_chips and not self.streamed else 0
        if not np.all(np.isfinite(X[:, raw:])):
            bad = int((~np.isfinite(X[:, raw:]).all(axis=1)).sum())
            raise DataError(f"{bad} feature rows have NaN or infinite values")
        return self.fit.predict(X)

    def features(self, data: pd.DataFrame | None = None, *, images: Any = None,
                 missing_images: str = "drop") -> tuple[np.ndarray, pd.Index]:
        """Features of new units, built as at fit time: ``(X, index of the rows kept)``.

        Parameters
        ----------
        data
            New rows with the formula's control columns (the outcome and treatment are not
            needed). May be None for a model on images only: rows are then the images' rows
            (an embeddings frame's index, or positions of a chips array).
        images
            New chips (``(N, T, H, W, C)``, ``(N, H, W, C)``, a ``(chips, mask)`` pair), an
            embeddings frame, a ``ChipsResult`` or cache: anything ``gc.cate`` takes, matched
            to ``data`` by unit id in the same way.
        missing_images
            ``"drop"`` (counted ``MissingImagesWarning``) or ``"error"``; imputation is not
            offered here (the training means are not those of new units).
        """
        if missing_images not in _EFFECT_MISSING:
            raise DataError(f"missing_images must be one of {_EFFECT_MISSING} for new units, "
                            f"got {missing_images!r}")
        if self.images and images is None:
            raise DataError("this CATE model uses image features: pass images= for the new "
                            "units (chips, an embeddings frame or a chips cache)")
        if not self.images and images is not None:
            raise DataError("this CATE model was fitted without images; do not pass images=")
        if data is None:
            if self.controls:
                raise DataError(f"this CATE model uses the controls {list(self.controls)}: "
                                "pass data= with those columns for the new units")
            data = _rows_of(images)
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if self.images:
            al = align_images(images, data, missing_images=missing_images, stacklevel=4,
                              lazy=True)
            data, images = al.data, al.images
        n = len(data)
        if n == 0:
            raise DataError("no new units to predict (empty data, or every image missing)")
        parts = []
        if self.controls:
            parts.append(self._controls(data))
        if self.images:
            parts.append(image_matrix(images, n, self.representation, self.seed))
        X = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
        if X.shape[1] == 0:
            X = np.zeros((n, 1))  # crossfit_cate's placeholder column for no modifiers
        if self.raw_chips and self.streamed:  # row positions in the new units' chips
            X = np.concatenate([np.arange(n, dtype=float)[:, None], X], axis=1)
        elif self.raw_chips:
            if isinstance(images, ChipsView):  # loaded if it fits the memory budget
                x, m = images.load()
                images = x if m is None else (x, m)
            chips = np.asarray(learner_chips(*chips_of(images)) if isinstance(images, tuple)
                               else images)
            X = np.concatenate([chips.reshape(chips.shape[0], -1).astype(float), X], axis=1)
        if X.shape[1] != self.n_features:
            raise DataError(f"new units give {X.shape[1]} features, the model was fitted on "
                            f"{self.n_features}; pass images of the same shape (periods, "
                            "bands, scales) as at fit time")
        return X, data.index

    def _controls(self, data: pd.DataFrame) -> np.ndarray:
        miss = sorted(_needed_columns(self.controls) - set(data.columns))
        if miss:
            raise DataError(f"new data lack the control columns {miss} of the formula "
                            f"'{self.formula}'")
        from formulaic.errors import DataMismatchWarning

        try:
            with warnings.catch_warnings():
                # formulaic turns unseen levels into NaN rows with a warning: refuse them
                warnings.simplefilter("error", DataMismatchWarning)
                mm = self.control_spec.get_model_matrix(data, na_action="raise")
        except Exception as err:  # formulaic raises several types (unseen levels, NaN)
            raise DataError(f"new data cannot be encoded as at fit time "
                            f"({type(err).__name__}: {err}); check categorical levels "
                            "and missing values") from None
        tab = np.asarray(mm, dtype=float)
        expect = list(self.names[:tab.shape[1]])
        if list(map(str, mm.columns)) != expect:
            raise DataError(f"new data encode to columns {list(map(str, mm.columns))}, "
                            f"the model was fitted on {expect}")
        return tab

    def effect(self, data: pd.DataFrame | None = None, *, images: Any = None,
               missing_images: str = "drop") -> pd.Series:
        """Predicted CATE of new units (rows of ``data`` and/or new chips), by unit.

        See :meth:`features` for the arguments. Returns a Series named ``"cate"`` on the new
        units' index (rows whose image is missing are dropped with a counted warning).
        """
        X, index = self.features(data, images=images, missing_images=missing_images)
        if self.raw_chips and self.streamed:  # the image learners read the new units' chips
            return pd.Series(self._rebound(images, data, missing_images).predict(X),
                             index=index, name="cate")
        return pd.Series(self.predict(X), index=index, name="cate")

    def _rebound(self, images: Any, data: pd.DataFrame | None,
                 missing_images: str) -> CateModel:
        """The model with its streamed image learners reading the new units' chips."""
        if data is None:
            data = _rows_of(images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted once already, by features()
            al = align_images(images, data, missing_images=missing_images, lazy=True)
        imgs = al.images
        if not isinstance(imgs, ChipsView):
            from geocausal.encoders.stream import ChipSource

            chips, mask = chips_of(imgs)
            if chips is None:
                raise DataError("this CATE model's image learner streamed chips: pass images= "
                                "as chips or a chips cache for the new units")
            imgs = ChipSource.of(chips, mask)

        def swap(m: Any) -> Any:
            if isinstance(m, ChipRows):
                prm = m.estimator.get_params()
                src = (imgs.source(prm.get("block_units"), prm.get("memory_budget"))
                       if isinstance(imgs, ChipsView) else imgs)
                new = ChipRows(m.estimator, SharedSource(src), m.start, m.stop)
                new.estimator_ = m.estimator_
                return new
            if hasattr(m, "models") and isinstance(m.models, tuple):  # outcome per arm
                from dataclasses import replace

                return replace(m, models=tuple(swap(v) for v in m.models))
            return m

        from dataclasses import replace

        fit = replace(self.fit, models={k: swap(v) for k, v in self.fit.models.items()})
        return replace(self, fit=fit)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model with joblib. Loading a joblib file runs code: load only your own."""
        import joblib

        path = Path(path)
        if path.exists() and not overwrite:
            raise DataError(f"'{path}' exists; pass overwrite=True to replace it")
        if not path.parent.is_dir():
            raise DataError(f"the folder of '{path}' does not exist; create it first")
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CateModel:
        """Read a model written by :meth:`save` (joblib: runs code, so only trusted files)."""
        import joblib

        path = Path(path)
        if not path.is_file():
            raise DataError(f"no saved CATE model at '{path}'")
        obj = joblib.load(path)
        if not isinstance(obj, cls):
            raise DataError(f"'{path}' does not hold a CateModel")
        return obj


def _needed_columns(controls: Sequence[str]) -> set[str]:
    from geocausal.formula import _names

    out: set[str] = set()
    for c in controls:
        out |= _names(c)
    return out


def _rows_of(images: Any) -> pd.DataFrame:
    """Rows of new images without data: a frame's index or array positions."""
    if isinstance(images, pd.DataFrame):
        return pd.DataFrame(index=images.index)
    first = images
    if isinstance(images, Mapping) and images:
        first = next(iter(images.values()))
    if isinstance(first, tuple):
        first = first[0]
    if isinstance(first, np.ndarray):
        return pd.DataFrame(index=pd.RangeIndex(first.shape[0]))
    raise DataError("pass data= (one row per new unit, indexed by unit id) with images= of "
                    f"type {type(images).__name__}, so that images are matched by id")
