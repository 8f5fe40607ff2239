"""Result objects shared by every design."""

from geocausal.results.estimate import Estimate, EstimateSet, make_provenance

__all__ = ["Estimate", "EstimateSet", "make_provenance"]
