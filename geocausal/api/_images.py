"""Moved to :mod:`geocausal.features.images`; this re-export goes once every import is switched."""

from geocausal.features.images import *  # noqa: F403
from geocausal.features.images import __all__  # noqa: F401
from geocausal.features.images import engineered_matrix as _engineered  # noqa: F401
