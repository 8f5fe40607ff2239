"""Nuisance learners and cross-fitting."""

from geocausal.nuisance.crossfit import crossfit_predict, fold_indices, make_folds

__all__ = ["crossfit_predict", "fold_indices", "make_folds"]
