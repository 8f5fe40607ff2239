"""Errors and warnings raised by geocausal.

Every message names the field, column, file or value at fault and says what to do.

Examples
--------
>>> from geocausal.errors import DataError, GeocausalError
>>> issubclass(DataError, GeocausalError)
True
"""

from __future__ import annotations


class GeocausalError(Exception):
    """Base class of every error geocausal raises on bad input."""


class ManifestError(GeocausalError):
    """A data manifest is malformed: the message names the field and the file."""


class DataError(GeocausalError):
    """Data are missing, NaN, in the wrong CRS, out of bounds or of the wrong type."""


class FormulaError(GeocausalError):
    """A formula is malformed or names a column the data do not have."""


class DesignError(GeocausalError):
    """The design cannot be estimated: no overlap, no units near the cutoff, singular design."""


class OptionError(DataError, DesignError):
    """An option (keyword argument) is unknown, misspelled or out of range.

    A subclass of both :class:`DataError` and :class:`DesignError`, the two errors options
    raised before the vocabulary was unified, so existing ``except`` clauses still catch it.
    """


class GeocausalWarning(UserWarning):
    """Base class of geocausal warnings (trimming counts, weak calibration, ...)."""


class ConvergenceWarning(GeocausalWarning):
    """An iterative fit stopped before converging."""


class DiagnosticWarning(GeocausalWarning):
    """A diagnostic flags that the nominal coverage of an interval may not hold."""


class WeakInstrumentWarning(DiagnosticWarning):
    """The first stage (a fuzzy RD's jump in take-up, an instrument) is weak: F < 10."""


class FewClustersWarning(DiagnosticWarning):
    """Cluster-robust inference rests on few clusters (fewer than
    :data:`geocausal.inference.variance.MIN_CLUSTERS`); the message gives the count.
    """


class FewSwitchersWarning(GeocausalWarning):
    """The treatment varies within few units (fewer than
    :data:`geocausal.designs.panel_transforms.MIN_SWITCHERS`) once unit effects are absorbed;
    the message gives the count.
    """


class MissingImagesWarning(GeocausalWarning):
    """Units have no usable image (no chip, an all-nodata chip, NaN features) and were dropped or
    imputed (``missing_images=``); the message gives the count and some ids.
    """


class IndicesSkippedWarning(GeocausalWarning):
    """Spectral indices were requested that the chips' band roles cannot support; the message
    lists the indices skipped and the bands each needs.
    """


class EmptyZoneWarning(GeocausalWarning):
    """Zones (buffers, polygons, chip footprints) cover no valid pixel: their zonal statistics
    are NaN; the message gives the count and some ids.
    """


class OverlappingZonesWarning(DiagnosticWarning):
    """Units' zones share pixels: their pixel distributions are correlated and unit-level
    standard errors of a design run low.
    """


class UnmatchedJoinWarning(GeocausalWarning):
    """A spatial, tabular or temporal join found no match for some units (their joined columns
    are missing) or several (the first was kept); the message gives the count and some ids.
    """


class NotSavedWarning(GeocausalWarning):
    """``Estimate.save`` met objects its safe format cannot hold (fitted models, arbitrary
    classes); they are replaced by a :class:`geocausal.results.io.NotSaved` marker. The message
    gives the count and where each sat.
    """


class NoClearObservationWarning(GeocausalWarning):
    """A composite period has no clear observation (every scene cloudy, shadowed or nodata) for
    some units: their chips there are fully masked and they are reported with the all-nodata
    units (``empty_ids``); the message gives the count per period and some ids.
    """


class FailedSpecificationWarning(GeocausalWarning):
    """Some specifications of a specification curve (``gc.spec_curve``) raised a
    :class:`GeocausalError`; they are kept in its table with ``status == "failed"`` and the
    error's message. The message gives how many failed, out of how many, and the first ones.
    """


class CandidateFailedWarning(GeocausalWarning):
    """A candidate representation of a nuisance stack (``images=`` chips with
    ``representation="auto"``: engineered or learned features) failed to build or to train in
    some fold; it was dropped from the stack. The message names the candidate, the nuisance and
    the error.
    """


class ImageFeaturesWorseWarning(DiagnosticWarning):
    """Image features made the out-of-fold loss of a nuisance worse than tabular controls alone
    (every image candidate lost to the tabular one); the message gives both losses.
    """
