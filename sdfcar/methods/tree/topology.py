"""The topology pass of the tube tree: drop vessels the views do not support, find missed
branches in what the refined tree leaves unexplained."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdfcar.geometry import CaseGeometry
from sdfcar.geometry.tubes import Segment
from sdfcar.methods.tubes.tracing import TubeSettings, extend_tree
from sdfcar.physics.tubes import DetectorRays, render_chain


def rendered_views(vessels: Sequence[Segment], geometry: CaseGeometry
                   ) -> list[list[np.ndarray]]:
    """Per view, the line integrals of each vessel (the tracer's tube model)."""
    return [[render_chain(DetectorRays(view), v.points, v.radii) for v in vessels]
            for view in geometry.views]


def support(vessels: Sequence[Segment], images: Sequence[np.ndarray],
            geometry: CaseGeometry) -> np.ndarray:
    """``(vessels, views)``: how much of each vessel's rendered integral the view holds once
    the other vessels are explained away (least-squares scale; 1: fully, 0: not at all)."""
    per_view = rendered_views(vessels, geometry)
    scores = np.zeros((len(vessels), len(images)))
    for v_index, (renders, image) in enumerate(zip(per_view, images)):
        residual = np.asarray(image, dtype=np.float64) - np.sum(renders, axis=0)
        for n, own in enumerate(renders):
            energy = float(np.sum(own * own))
            scores[n, v_index] = float(np.sum((residual + own) * own)) / energy \
                if energy > 0 else 0.0
    return scores


def prune(vessels: Sequence[Segment], images: Sequence[np.ndarray], geometry: CaseGeometry,
          min_support: float) -> list[Segment]:
    """``vessels`` without the branches (and their descendants) whose support in either
    view is below ``min_support``; the first vessel (the root) always stays."""
    scores = support(vessels, images, geometry).min(axis=1)
    dropped = {v.name for v, score in zip(vessels[1:], scores[1:]) if score < min_support}
    kept = []
    for vessel in vessels:
        if vessel.name in dropped or vessel.parent in dropped:
            dropped.add(vessel.name)
        else:
            kept.append(vessel)
    return kept


def retrace(vessels: Sequence[Segment], images: Sequence[np.ndarray], geometry: CaseGeometry,
            settings: TubeSettings) -> list[Segment]:
    """``vessels`` followed on beyond their ends, then the branches the tracer finds in what
    they leave unexplained (:func:`~sdfcar.methods.tubes.tracing.extend_tree`)."""
    return extend_tree(images, geometry, settings, vessels)
