"""The geometry contract (patient LPS millimetres, isocenter at the origin): C-arm views,
volume grids, cases, and the rotations they are built from. NumPy only, no torch."""

from sdfcar.geometry.contract import (CASE_KEYS, CORRECTION_KEYS, MIN_VIEW_SEPARATION_DEG, NUM_VIEWS,
                                      REFERENCE_VIEWS, VIEW_KEYS, VOLUME_KEYS, CaseGeometry,
                                      ViewGeometry, VolumeGrid)
from sdfcar.geometry.rotations import rotation_x, rotation_y, rotation_z

__all__ = ["CASE_KEYS", "CORRECTION_KEYS", "MIN_VIEW_SEPARATION_DEG", "NUM_VIEWS", "REFERENCE_VIEWS",
           "VIEW_KEYS", "VOLUME_KEYS", "CaseGeometry", "ViewGeometry", "VolumeGrid",
           "rotation_x", "rotation_y", "rotation_z"]
