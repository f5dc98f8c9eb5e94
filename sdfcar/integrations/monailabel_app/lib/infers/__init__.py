"""Infer tasks of the SDF-CAR MONAI Label app."""

from .sdfcar_infer import SdfcarInfer

__all__ = ["SdfcarInfer"]
