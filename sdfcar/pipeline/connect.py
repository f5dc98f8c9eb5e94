"""One tree from a fragmented vessel label: bridge fragments to the main component.

Two views leave some vessel pieces of a reconstruction separated from the tree by a voxel
or two of low occupancy (where a branch crosses a ghost-prone region). Dropping every piece
but the largest loses those branches; instead each fragment is joined to the tree along the
cheapest path through the occupancy (cost ``1 - occupancy`` per voxel, so a path through
half-filled voxels is cheap and one through empty space is dear), when that path costs at
most ``max_gap``. Specks smaller than ``min_voxels`` and fragments too far away are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from sdfcar.errors import bad_input

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
MODES = ("bridge", "largest", "none")
#: Cost of a path step through a full voxel (keeps paths short inside the vessel).
MIN_STEP_COST = 0.05


@dataclass(frozen=True)
class BridgeSettings:
    """How fragments are joined: a fragment needs ``min_voxels`` voxels and a path of cost
    at most ``max_gap`` (about the number of empty voxels crossed)."""

    min_voxels: int = 4
    max_gap: float = 3.0


@dataclass
class Selection:
    """The selected tree and what was done to get it."""

    label: np.ndarray  # bool
    components_before: int
    bridges: list[dict] = field(default_factory=list)  # fragment voxels, path cost, length
    dropped_voxels: int = 0

    def summary(self) -> dict:
        """JSON-ready account for run.json."""
        return {"components_before_postprocess": self.components_before,
                "bridged_fragments": len(self.bridges), "bridges": self.bridges,
                "dropped_voxels": self.dropped_voxels}


def select_tree(mask: np.ndarray, occupancy: np.ndarray, mode: str = "bridge",
                settings: BridgeSettings = BridgeSettings()) -> Selection:
    """The vessel tree of ``mask``: ``bridge`` fragments to the largest component,
    keep the ``largest`` component only, or ``none`` (unchanged)."""
    if mode not in MODES:
        raise bad_input("connectivity", f"expected one of {', '.join(MODES)}, got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask, CONNECTIVITY_26)
    if mode == "none" or count <= 1:
        return Selection(mask.copy(), count)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    main = int(np.argmax(sizes))
    selection = Selection(labels == main, count)
    if mode == "bridge":
        _bridge(selection, labels, sizes, main, np.asarray(occupancy, dtype=np.float64),
                settings)
    selection.dropped_voxels = int(mask.sum() - (mask & selection.label).sum())
    return selection


def _bridge(selection: Selection, labels: np.ndarray, sizes: np.ndarray, main: int,
            occupancy: np.ndarray, settings: BridgeSettings) -> None:
    """Join fragments to ``selection.label`` in rounds (a fragment may reach the tree
    through another one joined in an earlier round)."""
    pending = {int(i) for i in np.flatnonzero(sizes >= settings.min_voxels)} - {main}
    box = _bounding_box(labels > 0, margin=int(np.ceil(settings.max_gap)) + 1)
    cost = np.clip(1.0 - occupancy[box], MIN_STEP_COST, 1.0)
    tree = selection.label[box]  # a view: joining here joins in the label
    voxels_of = ndimage.value_indices(labels[box], ignore_value=0)
    while pending:
        search = MCP_Geometric(cost, fully_connected=True)
        reach, _ = search.find_costs(np.argwhere(tree))
        joined = []
        for fragment in sorted(pending):
            voxels = voxels_of[fragment]
            costs = reach[voxels]
            nearest = int(np.argmin(costs))
            if not costs[nearest] <= settings.max_gap:
                continue
            path = np.asarray(search.traceback(tuple(int(v[nearest]) for v in voxels)))
            tree[tuple(path.T)] = True
            tree[voxels] = True
            selection.bridges.append({"fragment_voxels": int(sizes[fragment]),
                                      "path_cost": round(float(costs[nearest]), 3),
                                      "path_voxels": int(len(path))})
            joined.append(fragment)
        if not joined:
            break
        pending -= set(joined)


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the box around ``mask`` grown by ``margin`` voxels (clipped to the grid)."""
    where = np.argwhere(mask)
    low = np.maximum(where.min(axis=0) - margin, 0)
    high = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))
