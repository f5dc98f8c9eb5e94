"""Infer tasks of the SDF-CAR MONAI Label app."""

from sdfcar.apps.monailabel.app.lib.infers.sdfcar_infer import SdfcarInfer

__all__ = ["SdfcarInfer"]
