"""Inference shared by every design: influence-function variance, bootstrap, adjustments."""

from geocausal.inference.bootstrap import (
    multiplier_bootstrap,
    multipliers,
    normal_critical,
    sup_t_critical,
)
from geocausal.inference.multitest import adjust_pvalues
from geocausal.inference.variance import VcovRequest, parse_vcov, vcov_from_influence

__all__ = [
    "VcovRequest",
    "adjust_pvalues",
    "multiplier_bootstrap",
    "multipliers",
    "normal_critical",
    "parse_vcov",
    "sup_t_critical",
    "vcov_from_influence",
]
