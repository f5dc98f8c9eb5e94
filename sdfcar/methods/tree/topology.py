"""The topology pass of the tube tree: drop vessels the views do not support, find missed
branches in what the refined tree leaves unexplained."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from sdfcar.geometry import CaseGeometry
from sdfcar.geometry.tubes import Segment
from sdfcar.methods.base import Problem
from sdfcar.methods.tree.model import TreeModel
from sdfcar.methods.tree.refine import rebuild_pairs, view_targets
from sdfcar.methods.tubes.tracing import TubeSettings, extend_tree
from sdfcar.physics.pieces import ball_intervals, piece_intervals, render_union


def support(vessels: Sequence[Segment], problem: Problem) -> np.ndarray:
    """``(vessels, views)``: how much of what each vessel adds to the rendered tree the view
    holds once the other vessels are explained away (least-squares scale; 1: fully, 0: not
    at all), rendered as the model renders them (the union of pieces and balls, so a
    branch's part inside its parent does not count)."""
    model = TreeModel.from_segments(vessels, torch.float32, problem.device)
    targets = view_targets(problem.geometry.views, problem.measured, problem.silhouettes,
                           torch.float32, problem.device)
    rebuild_pairs(model, targets)
    lengths = torch.tensor([v.stop - v.start for v in model.vessels], device=problem.device)
    slot_vessel = torch.repeat_interleave(torch.arange(len(vessels), device=problem.device),
                                          lengths)
    piece_vessel = slot_vessel.index_select(0, model.piece_slots()[:, 0])
    scores = np.zeros((len(vessels), len(targets)))
    with torch.no_grad():
        for v_index, target in enumerate(targets):
            owners = (piece_vessel.index_select(0, target.pairs.pieces),
                      slot_vessel.index_select(0, target.ball_pairs.pieces))
            pieces, balls = target.piece_parts(model), target.ball_parts(model)
            for n in range(len(vessels)):
                # Only the pixels this vessel reaches can change: render them alone.
                near = torch.zeros(target.pixel_count, dtype=torch.bool, device=problem.device)
                near[target.pairs.pixels[owners[0] == n]] = True
                near[target.ball_pairs.pixels[owners[1] == n]] = True
                local = (near.index_select(0, target.pairs.pixels),
                         near.index_select(0, target.ball_pairs.pixels))

                def rendered(keep: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
                    return render_union(
                        [(target.pairs.subset(local[0] & keep(owners[0])), piece_intervals,
                          pieces),
                         (target.ball_pairs.subset(local[1] & keep(owners[1])),
                          ball_intervals, balls)],
                        target.source, target.pixel_count)

                others = rendered(lambda owner: owner != n)
                own = rendered(lambda owner: owner >= 0) - others  # what only it adds
                energy = float((own * own).sum())
                scores[n, v_index] = float(((target.measured - others) * own).sum()) / energy \
                    if energy > 0 else 0.0
    return scores


def prune(vessels: Sequence[Segment], problem: Problem, min_support: float) -> list[Segment]:
    """``vessels`` without the branches (and their descendants) whose support in either
    view is below ``min_support``; the first vessel (the root) always stays."""
    scores = support(vessels, problem).min(axis=1)
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
