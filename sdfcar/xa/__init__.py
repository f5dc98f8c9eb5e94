"""X-ray angiography input: DICOM XA runs (:mod:`~sdfcar.xa.dicom`; pixel
decoding :mod:`~sdfcar.xa.pixels`, detector spacing :mod:`~sdfcar.xa.spacing`), geometry given by hand
(:mod:`~sdfcar.xa.overrides`), frame choice (:mod:`~sdfcar.xa.frames`), vessel extraction
(:mod:`~sdfcar.xa.vessels`, :mod:`~sdfcar.xa.inpaint`) and two-view pairs
(:mod:`~sdfcar.xa.pair`)."""

from sdfcar.xa.dicom import (ACCEPTED_SOP_CLASSES, ENHANCED_XA_SOP_CLASS, XA_SOP_CLASS, XARun,
                             is_dicom, read_xa)
from sdfcar.xa.overrides import (OVERRIDE_KEYS, GeometryOverrides, load_geometry_overrides,
                                 load_view_overrides, parse_geometry_overrides)
from sdfcar.xa.pixels import LOG_NEPERS_FULL_RANGE, IntensityModel
from sdfcar.xa.pair import (PreparedView, XAPair, load_xa_pair, prepare_xa_pair,
                            prepare_xa_view, read_mask)

__all__ = ["ACCEPTED_SOP_CLASSES", "ENHANCED_XA_SOP_CLASS", "LOG_NEPERS_FULL_RANGE",
           "OVERRIDE_KEYS", "XA_SOP_CLASS", "GeometryOverrides", "IntensityModel",
           "PreparedView", "XAPair", "XARun", "is_dicom", "load_geometry_overrides",
           "load_view_overrides", "load_xa_pair", "parse_geometry_overrides",
           "prepare_xa_pair", "prepare_xa_view", "read_mask", "read_xa"]
