"""Inference shared by every design: influence-function variance, bootstrap, adjustments."""

from geocausal.inference.bootstrap import (
    multiplier_bootstrap,
    multipliers,
    normal_critical,
    sup_t_critical,
)
from geocausal.inference.multitest import adjust_pvalues
from geocausal.inference.variance import (
    MIN_CLUSTERS,
    VarianceRule,
    VcovRequest,
    check_clusters,
    median_vcov,
    parse_vcov,
    variance_from_rule,
    vcov_from_influence,
)

__all__ = [
    "MIN_CLUSTERS",
    "VarianceRule",
    "VcovRequest",
    "check_clusters",
    "median_vcov",
    "variance_from_rule",
    "adjust_pvalues",
    "multiplier_bootstrap",
    "multipliers",
    "normal_critical",
    "parse_vcov",
    "sup_t_critical",
    "vcov_from_influence",
]
