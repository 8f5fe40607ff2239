"""A scikit-learn learner that sees images: ``ImageLearner``.

``ImageLearner`` trains an encoder with a supervised head (logistic for a 0/1 target, squared
error otherwise) and offers ``fit``, ``predict``, ``predict_proba`` and ``transform``
(embeddings), so it fills any learner slot of any design (``learners={"propensity":
ImageLearner()}``) and survives ``sklearn.base.clone``.

``X`` may be

- a chips array ``(N, H, W, C)`` or ``(N, T, H, W, C)`` (with ``encoder="sequence"``);
- a 2-D array whose first ``prod(image_shape)`` columns are the flattened chips and the rest
  tabular covariates, with ``image_shape=(H, W, C)`` (or ``(T, H, W, C)``): this form is what
  generic cross-fitting code that slices ``X[rows]`` passes around;
- a tuple ``(chips, tabular)``.

Tabular covariates are standardised and concatenated with the image embedding before the head.

The chips may also be a chips cache: a ``ChipsCache``/``ChipsResult``, the path of a
``chips-*.zarr`` folder, the cache's lazy array (``cache.chips``) or a
:class:`~geocausal.encoders.stream.ChipSource` (a ``subset`` of one for cross-fitting), alone or
as ``(cache, tabular)``. Then ``fit`` trains streaming blocks of units from the cache
(:func:`~geocausal.encoders.stream.fit_supervised_streaming`: the in-memory loop, block by
block; the same numbers when one block holds every unit) and ``predict``/``transform`` run
block by block; the whole cache is never loaded. Blocks hold ``block_units`` units (default:
as many as fit ``memory_budget``, else ``$GEOCAUSAL_MEMORY_BUDGET``, else 2 GB); a block size
that does not fit is a :class:`~geocausal.errors.DataError` saying what to lower, never an
out-of-memory kill. A cache has ``T`` periods per unit: a single-image encoder reads the chips
of ``period`` (required when ``T > 1``), ``encoder="sequence"`` all of them. A target with an
index (a pandas Series) is aligned on the cache's unit ids.

Examples
--------
>>> import numpy as np
>>> from sklearn.base import clone
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 8, 8, 2)).astype("float32"); y = rng.integers(0, 2, 40)
>>> lr = clone(ImageLearner(epochs=1, widths=(4,), embed_dim=4))
>>> lr.fit(X, y).predict_proba(X).shape
(40, 2)
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator

from geocausal.encoders.modules import ModelSpec, build_model
from geocausal.encoders.objectives import binary, is_binary, regression
from geocausal.encoders.stream import (
    ChipSource,
    apply_source,
    fit_supervised_streaming,
    is_lazy,
)
from geocausal.encoders.train import TrainConfig, TrainResult, embed_array, fit, predict
from geocausal.errors import DataError, DiagnosticWarning


def still_improving(res: TrainResult, window: int = 3, rel: float = 0.01) -> bool:
    """Whether training ended while the held-out loss was still clearly falling.

    True when the best held-out epoch is the last one and that loss is more than ``rel``
    (relative) below the best loss before the last ``window`` epochs. Without a held-out
    split there is nothing to judge and the answer is False.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> still_improving(NS(val_loss=(1.0, 0.8, 0.6, 0.5, 0.4), best_epoch=4))
    True
    >>> still_improving(NS(val_loss=(1.0, 0.5, 0.45, 0.449, 0.451, 0.4485), best_epoch=5))
    False
    """
    v = res.val_loss
    if len(v) <= window or res.best_epoch != len(v) - 1:
        return False
    before = min(v[:-window])
    return v[-1] < before * (1 - rel)


def warm_start_head(model, tab: np.ndarray, target: np.ndarray, classification: bool) -> None:
    """Start the head's tabular weights and bias at the linear (or logistic) fit on ``tab``.

    A linear effect of a covariate lives in one head weight, which Adam moves by about the
    learning rate per step: from a random start it takes ~1/lr steps to reach a coefficient of
    order one, far more than a short training run makes, and the covariate stays under-fitted
    (its effect leaks into the confounding an image design is meant to remove). Starting the
    tabular block at the least-squares (or logistic) coefficients puts the linear part in place;
    training then learns the image part and corrects the rest. ``model`` is changed in place.

    Examples
    --------
    >>> import numpy as np
    >>> from geocausal.encoders.modules import ModelSpec, build_model
    >>> m = build_model(ModelSpec("cnn", in_bands=1, widths=(2,), embed_dim=2, n_outputs=1,
    ...                           n_tabular=1), 0)
    >>> t = np.linspace(-1, 1, 50)[:, None]
    >>> warm_start_head(m, t, 3 * t[:, 0] + 1, classification=False)
    >>> round(float(m.head.kernel[...][-1, 0]), 5), round(float(m.head.bias[...][0]), 5)
    (3.0, 1.0)
    """
    from sklearn.linear_model import LinearRegression, LogisticRegression

    lin = (LogisticRegression(C=1e4, max_iter=2000) if classification
           else LinearRegression()).fit(tab, target)
    coef = np.asarray(lin.coef_, np.float32).ravel()
    kernel = np.array(model.head.kernel[...])
    kernel[-coef.size:, 0] = coef
    model.head.kernel[...] = kernel
    bias = np.array(model.head.bias[...])
    bias[0] = float(np.ravel(lin.intercept_)[0])
    model.head.bias[...] = bias


class ImageLearner(BaseEstimator):
    """Image (+ tabular) classifier or regressor with the scikit-learn interface.

    Parameters
    ----------
    encoder
        ``"cnn"``, ``"vit"`` or ``"sequence"``.
    image_shape
        Shape of one chip (without the unit axis) when ``X`` is a flattened 2-D array.
    task
        ``"auto"`` (0/1 targets -> classification), ``"classification"`` or ``"regression"``.
    epochs, batch_size, learning_rate, weight_decay, val_frac, patience, band_dropout
        Training settings (:class:`~geocausal.encoders.train.TrainConfig`).
    embed_dim, widths, patch, dim, depth, aggregator
        Architecture (:class:`~geocausal.encoders.modules.ModelSpec`).
    seed
        Seeds initialisation, the held-out split, batches and augmentations.
    progress
        Show a progress bar while training.
    period
        With a chips cache (or ``(N, T, H, W, C)`` chips) and a single-image encoder: the
        period position whose chips are used.
    block_units, memory_budget
        Units per streamed block of a chips cache, and the memory chips may take
        (:func:`~geocausal.encoders.stream.memory_budget`).
    """

    #: an image learner: designs feed it the chips (:func:`geocausal.vocabulary.is_image_learner`)
    uses_images = True

    def __init__(self, encoder: str = "cnn", image_shape: tuple[int, ...] | None = None,
                 task: str = "auto", epochs: int = 10, batch_size: int = 64,
                 learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                 val_frac: float = 0.2, patience: int = 3, band_dropout: float = 0.1,
                 embed_dim: int = 32, widths: tuple[int, ...] = (16, 32), patch: int = 4,
                 dim: int = 32, depth: int = 2, aggregator: str = "transformer",
                 seed: int = 0, progress: bool = False, period: int | None = None,
                 block_units: int | None = None, memory_budget: int | str | None = None):
        self.encoder = encoder
        self.image_shape = image_shape
        self.task = task
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.val_frac = val_frac
        self.patience = patience
        self.band_dropout = band_dropout
        self.embed_dim = embed_dim
        self.widths = widths
        self.patch = patch
        self.dim = dim
        self.depth = depth
        self.aggregator = aggregator
        self.seed = seed
        self.progress = progress
        self.period = period
        self.block_units = block_units
        self.memory_budget = memory_budget

    def _source(self, X) -> tuple[ChipSource | None, np.ndarray | None, np.ndarray | None]:
        """``(source, tabular, unit ids)`` when ``X`` holds a chips cache, else Nones."""
        import os

        chips, tab = X if isinstance(X, tuple) and len(X) == 2 else (X, None)
        ids = None
        if isinstance(chips, str | os.PathLike):
            from geocausal.data.chips import open_cache

            chips = open_cache(chips)
        if hasattr(chips, "chips") and hasattr(chips, "unit_ids"):
            ids = np.asarray(chips.unit_ids)
        elif not (isinstance(chips, ChipSource) or is_lazy(chips)):
            return None, None, None
        src = chips if isinstance(chips, ChipSource) else ChipSource.of(
            chips, block_units=self.block_units, budget=self.memory_budget)
        if tab is not None:
            tab = np.asarray(tab, float)
            if tab.ndim != 2 or tab.shape[0] != src.n:
                raise DataError(f"tabular covariates must be ({src.n}, p) for the cache's "
                                f"{src.n} units, got shape {tab.shape}")
        return src, tab, ids

    def _period(self) -> int | None:
        return None if self.encoder == "sequence" else self.period

    def _split_X(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        chips, tab = self._split_X_raw(X)
        if chips.ndim == 5 and self.encoder != "sequence" and self.period is not None:
            t = chips.shape[1]
            if (isinstance(self.period, bool) or not isinstance(self.period, int | np.integer)
                    or not -t <= self.period < t):
                raise DataError(f"period={self.period!r} must be an integer position in "
                                f"0..{t - 1}")
            chips = chips[:, self.period]
        return chips, tab

    def _split_X_raw(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        if isinstance(X, tuple):
            chips, tab = X
            return np.asarray(chips, np.float32), None if tab is None else np.asarray(tab, float)
        X = np.asarray(X)
        if X.ndim >= 4:
            return X.astype(np.float32), None
        if X.ndim == 2 and self.image_shape is not None:
            k = int(np.prod(self.image_shape))
            if X.shape[1] < k:
                raise DataError(f"X has {X.shape[1]} columns, fewer than image_shape="
                                f"{self.image_shape} needs ({k})")
            chips = X[:, :k].astype(np.float32).reshape((X.shape[0], *self.image_shape))
            tab = X[:, k:].astype(float) if X.shape[1] > k else None
            return chips, tab
        raise DataError(f"ImageLearner needs chips (N, H, W, C), a (chips, tabular) tuple or a "
                        f"2-D array with image_shape set; got X of shape {X.shape}")

    def _spec(self, bands: int, n_tab: int) -> ModelSpec:
        return ModelSpec(encoder=self.encoder, in_bands=bands,
                         embed_dim=self.embed_dim, widths=tuple(self.widths), patch=self.patch,
                         dim=self.dim, depth=self.depth, aggregator=self.aggregator,
                         n_outputs=1, n_tabular=n_tab)

    def _tab(self, tab):
        if tab is None:
            return None
        return ((tab - self.tab_mean_) / self.tab_scale_).astype(np.float32)

    def fit(self, X, y, sample_weight=None):
        """Train on images (and tabular covariates) ``X`` and target ``y``."""
        if sample_weight is not None:
            raise DataError("ImageLearner does not support sample_weight; pass None")
        src, tab, ids = self._source(X)
        if src is None:
            chips, tab = self._split_X(X)
            n, bands = chips.shape[0], chips.shape[-1]
        else:
            chips, n, bands = None, src.n, src.shape[-1]
        if ids is not None and hasattr(y, "index") and hasattr(y, "reindex"):
            missing = int((~np.isin(ids, np.asarray(y.index))).sum())
            if missing:
                raise DataError(f"y has no value for {missing} of the cache's {len(ids)} unit "
                                "ids; give y indexed by unit id for every unit of the cache")
            y = y.reindex(ids)  # aligned by unit id, never by position
        y = np.asarray(y, float).ravel()
        if y.shape[0] != n:
            raise DataError(f"y has {y.shape[0]} rows, X has {n}")
        if self.task not in ("auto", "classification", "regression"):
            raise DataError(f"task={self.task!r} must be 'auto', 'classification' or "
                            "'regression'")
        clf = self.task == "classification" or (self.task == "auto" and is_binary(y))
        if clf:
            self.classes_ = np.unique(y)
            if len(self.classes_) != 2 or not is_binary(y):
                raise DataError(f"classification needs 0/1 targets with both classes, got "
                                f"classes {self.classes_.tolist()}")
            target, self.y_loc_, self.y_scale_ = y, 0.0, 1.0
        else:
            self.y_loc_ = float(y.mean())
            self.y_scale_ = float(y.std()) or 1.0
            target = (y - self.y_loc_) / self.y_scale_
        self.is_classifier_ = clf
        if tab is not None:
            self.tab_mean_ = tab.mean(axis=0)
            sd = tab.std(axis=0)
            self.tab_scale_ = np.where(sd > 0, sd, 1.0)
        self.n_tabular_ = 0 if tab is None else tab.shape[1]
        spec = self._spec(bands, self.n_tabular_)
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                          learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                          val_frac=self.val_frac, patience=self.patience,
                          band_dropout=self.band_dropout, progress=self.progress)
        model = build_model(spec, self.seed)
        tab_z = self._tab(tab)
        if tab_z is not None:
            warm_start_head(model, tab_z, target, clf)
        obj = binary() if clf else regression()
        if src is None:
            res = fit(model, obj, chips, target, tab=tab_z, config=cfg, seed=self.seed)
        else:
            res = fit_supervised_streaming(model, obj, src, target, tab=tab_z, config=cfg,
                                           seed=self.seed, period=self._period())
        self.model_ = res.model
        self.history_ = res
        self.converged_ = not still_improving(res)
        if not self.converged_:
            warnings.warn(f"ImageLearner: the held-out loss was still falling at the last of "
                          f"epochs={self.epochs} (best epoch = last); the model is probably "
                          "under-trained, which biases the estimates that use it: raise "
                          "epochs", DiagnosticWarning, stacklevel=2)
        return self

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise DataError("this ImageLearner is not fitted yet; call fit first")

    def standardised_tabular(self, tab) -> np.ndarray | None:
        """Tabular covariates alone (``(N, k)``, or None) standardised as in training."""
        self._check_fitted()
        return self._tab(None if tab is None else np.asarray(tab, float))

    def scaled_tabular(self, X) -> np.ndarray | None:
        """The tabular columns of ``X`` standardised as in training (the model's tabular input),
        or None when ``X`` has none; used to compute gradient salience of a fitted model.
        """
        self._check_fitted()
        return self._tab(self._split_X(X)[1])

    def decision_function(self, X) -> np.ndarray:
        """Raw head output (logit for classification, standardised scale otherwise)."""
        self._check_fitted()
        src, tab, _ = self._source(X)
        if src is None:
            chips, tab = self._split_X(X)
        if (tab is None) != (self.n_tabular_ == 0):
            raise DataError(f"the learner was fitted with {self.n_tabular_} tabular columns")
        if src is not None:
            return apply_source(self.model_, src, tab=self._tab(tab),
                                period=self._period())[:, 0]
        return predict(self.model_, chips, self._tab(tab))[:, 0]

    def predict_proba(self, X) -> np.ndarray:
        """``(N, 2)`` class probabilities (classification only)."""
        if not getattr(self, "is_classifier_", True):
            raise DataError("predict_proba needs a 0/1 target; this learner was fitted as a "
                            "regression")
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        """Class labels (classification) or predicted values (regression)."""
        out = self.decision_function(X)
        if self.is_classifier_:
            return self.classes_[(out > 0).astype(int)]
        return out * self.y_scale_ + self.y_loc_

    def transform(self, X) -> np.ndarray:
        """Image embeddings ``(N, embed_dim)`` from the fitted encoder."""
        self._check_fitted()
        src, _, _ = self._source(X)
        if src is not None:
            return apply_source(self.model_, src, kind="embed", period=self._period())
        return embed_array(self.model_, self._split_X(X)[0])
