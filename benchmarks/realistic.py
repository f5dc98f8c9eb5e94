"""The realistic suites of issue 18: no inverse crime, every preset.

``realistic``: phantoms lca0-3 and rca0-3 (:mod:`sdfcar.synthetic.phantom`) and lumens0
(:mod:`sdfcar.synthetic.lumens`, the independent generator) x presets x conditions
(noise-free, Gaussian 2 % and 5 %, Poisson at a clinical dose, synthetic XA DICOM through the
full 2D pipeline), plus one ceiling row per phantom. ``robustness-matrix``: lca0 x presets
x errors (view separation, rotation error on view 2's primary and secondary angle,
isocenter error of view 2, a head-feet shift of the tree in view 2 only, noise).
``calibration``: lca0-1, rca0-1 x view-2 geometry errors x self-calibration auto / off
(``sdf-tree`` unless ``--presets`` says otherwise), with how far the geometry used lies
from the truth.

Views are always simulated from the tree voxelised :data:`FINE` times finer than the
reconstruction grid (0.4 mm for the 0.8 mm grid) at the reference geometry (two 512^2
views); geometry errors go into the geometry given to the fit only, never into the
simulation. Each cell is scored against the tree's label on the reconstruction grid
(``scores``) and against its 0.4 mm label (``scores_fine``; the method's label resampled),
with the true centrelines and radii for the centreline metrics; a method with a tree model
also has its own centrelines scored against the true ones (``scores_centrelines``: what
the QCA measures, rather than the label's skeleton), and a method with a continuous model
its outputs written at the fine spacing (``--output-spacing``) scored against the fine
label (``scores_output_fine``), after the cell's time is taken. The ceiling row scores the
0.4 mm label averaged onto the 0.8 mm grid and thresholded at 0.5 the same way.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import CEILING, Cell, cell_config, cell_record, cell_views
from sdfcar.centerlines import Centerlines, from_polylines, parse, segments_json
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.metrics import centerline_scores, evaluate
from sdfcar.pipeline.inputs import Inputs, from_arrays, from_xa_pair
from sdfcar.pipeline.run import finish, fit
from sdfcar.synthetic.lumens import generate_lumens
from sdfcar.synthetic.phantom import generate_tree, rasterize
from sdfcar.synthetic.simulate import NoiseModel, project_label
from sdfcar.synthetic.xa import (DEFAULT_PHOTONS_PER_MM2, WATER_MU_PER_MM, CineOptions,
                                 simulate_pair, write_pair)

#: Views are simulated from the tree voxelised this many times finer than the grid.
FINE = 2
LUMENS = "lumens"
PHANTOMS = (*(("lca", s) for s in range(4)), *(("rca", s) for s in range(4)), (LUMENS, 0))
MATRIX_PHANTOMS = (("lca", 0),)
#: Poisson noise at a clinical dose: the synthetic XA runs' unattenuated photons per
#: 0.278 mm pixel behind 200 mm of water (``DEFAULT_PHOTONS_PER_MM2 * 0.278^2 *
#: exp(-0.02 * 200)``, about 1.7e3 photons per pixel and frame), rounded.
CLINICAL_PHOTONS = float(round(DEFAULT_PHOTONS_PER_MM2 * 0.278**2
                               * math.exp(-WATER_MU_PER_MM * 200.0), -2))
#: Frames per synthetic XA cine run.
XA_FRAMES = 12
#: Acquisition conditions of the realistic suite: label -> cell fields.
CONDITIONS = {
    "noise-free": {},
    "Gaussian 2 %": {"noise": 0.02},
    "Gaussian 5 %": {"noise": 0.05},
    f"Poisson {CLINICAL_PHOTONS:g} photons/pixel": {"poisson_photons": CLINICAL_PHOTONS},
    "XA DICOM": {"xa": True},
}
#: Robustness-matrix axes: cell field -> error values (the error-free cell is the origin).
ERRORS = {
    "separation_deg": (20.0, 30.0, 45.0, 60.0, 90.0),
    "rotation_error_deg": (0.5, 1.0, 2.0, 3.0),
    "rotation_secondary_error_deg": (0.5, 1.0, 2.0, 3.0),
    "isocenter_error_mm": (1.0, 2.0, 3.0, 5.0),
    "view_shift_mm": (2.0, 5.0),
    "noise": (0.02, 0.05, 0.1),
}


#: Self-calibration suite: phantoms, and view-2 errors by name (cell fields). The rotation
#: errors are the positioner angle read wrongly; the shift is the tree moved head-feet in
#: view 2 (breathing); the isocenter error a principal point off across the columns.
CALIBRATION_PHANTOMS = (("lca", 0), ("lca", 1), ("rca", 0), ("rca", 1))
CALIBRATION_ERRORS = {
    "exact geometry": {},
    "primary 2 deg + head-feet 5 mm": {"rotation_error_deg": 2.0, "view_shift_mm": 5.0},
    "secondary 2 deg + head-feet 5 mm": {"rotation_secondary_error_deg": 2.0,
                                         "view_shift_mm": 5.0},
    "primary 2 deg + isocenter 3 mm + head-feet 5 mm": {
        "rotation_error_deg": 2.0, "isocenter_error_mm": 3.0, "view_shift_mm": 5.0},
}
CALIBRATION_PRESETS = ("sdf-tree",)


def default_presets() -> list[str]:
    """Every preset of :data:`sdfcar.config.PRESETS` (read at run time, never copied)."""
    from sdfcar.config import PRESETS

    return list(PRESETS)


def _cell(suite: str, kind: str, seed: int, preset: str, iterations: dict[str, int],
          **fields) -> Cell:
    count = iterations.get(preset)
    note = (f"{preset} ran {count} iterations; its time to solution is extrapolated to the "
            "preset's" if count is not None else "")
    return Cell(suite, kind, seed, preset, phantom_supersample=FINE, iterations=count,
                note=note, **fields)


def realistic_cells(presets: Sequence[str] | None = None,
                    iterations: dict[str, int] | None = None) -> list[Cell]:
    """Ceiling rows first, then per condition every phantom with every preset."""
    presets, iterations = list(presets or default_presets()), iterations or {}
    cells = [_cell("realistic", kind, seed, CEILING, {}) for kind, seed in PHANTOMS]
    for fields in CONDITIONS.values():
        cells += [_cell("realistic", kind, seed, preset, iterations, **fields)
                  for kind, seed in PHANTOMS for preset in presets]
    return cells


def matrix_cells(presets: Sequence[str] | None = None,
                 iterations: dict[str, int] | None = None) -> list[Cell]:
    """Per preset: the error-free cell, then each error axis of :data:`ERRORS`."""
    presets, iterations = list(presets or default_presets()), iterations or {}
    cells = []
    for kind, seed in MATRIX_PHANTOMS:
        for preset in presets:
            cells.append(_cell("robustness-matrix", kind, seed, preset, iterations))
            cells += [_cell("robustness-matrix", kind, seed, preset, iterations,
                            **{field: value})
                      for field, values in ERRORS.items() for value in values]
    return cells


def calibration_cells(presets: Sequence[str] | None = None,
                      iterations: dict[str, int] | None = None) -> list[Cell]:
    """Per phantom and error of :data:`CALIBRATION_ERRORS`: each preset (default:
    :data:`CALIBRATION_PRESETS`) with self-calibration as the preset has it (``auto``) and
    off; with the exact geometry forced ``on`` and off (``auto`` leaves it alone)."""
    presets, iterations = list(presets or CALIBRATION_PRESETS), iterations or {}
    return [_cell("calibration", kind, seed, preset, iterations, calibration=mode, **fields)
            for fields in CALIBRATION_ERRORS.values() for kind, seed in CALIBRATION_PHANTOMS
            for preset in presets for mode in (("auto", "off") if fields else ("on", "off"))]


SUITES = {"realistic": realistic_cells, "robustness-matrix": matrix_cells,
          "calibration": calibration_cells}


# ----------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Truth:
    """A phantom's label on the reconstruction grid and on the fine grid, and its true
    centrelines with radii."""

    label: np.ndarray
    fine: np.ndarray
    fine_grid: VolumeGrid
    centerlines: Centerlines


def truth_of(kind: str, seed: int, grid: VolumeGrid, factor: int = FINE) -> Truth:
    """The truth of phantom ``(kind, seed)`` on ``grid`` and on ``grid.refined(factor)``."""
    fine_grid = grid.refined(factor)
    if kind == LUMENS:
        tree = generate_lumens(seed)
        label, fine, lines = tree.label(grid), tree.label(fine_grid), tree.centerlines()
    else:
        tree = generate_tree(kind, seed)
        label, fine = rasterize(tree, grid) >= 0.5, rasterize(tree, fine_grid) >= 0.5
        lines = segments_json(tree.segments)
    return Truth(label > 0, fine > 0, fine_grid, from_polylines(parse(lines)))


def ceiling_label(fine: np.ndarray, factor: int = FINE) -> np.ndarray:
    """The fine label averaged over ``factor^3`` blocks, thresholded at 0.5."""
    n = [size // factor for size in fine.shape]
    blocks = fine.reshape(n[0], factor, n[1], factor, n[2], factor)
    return blocks.mean(axis=(1, 3, 5)) >= 0.5


# ----------------------------------------------------------------------------- one cell


def fit_geometry(cell: Cell, geometry: CaseGeometry) -> CaseGeometry:
    """The geometry given to the fit: view 2 with the cell's rotation errors and its
    isocenter misplaced by ``isocenter_error_mm`` across the detector's columns (a
    principal-point shift of that much times the magnification SID / SOD)."""
    first, second = geometry.views
    magnification = second.source_to_detector_mm / second.source_to_isocenter_mm
    row, col = second.detector_offset_mm
    second = dataclasses.replace(
        second, primary_angle_deg=second.primary_angle_deg + cell.rotation_error_deg,
        secondary_angle_deg=second.secondary_angle_deg + cell.rotation_secondary_error_deg,
        detector_offset_mm=(row, col + cell.isocenter_error_mm * magnification))
    return CaseGeometry((first, second), geometry.volume)


def simulated_views(cell: Cell, truth: Truth, geometry: CaseGeometry) -> list[np.ndarray]:
    """Line integrals of the fine label in both views (view 2 sees the tree moved
    ``view_shift_mm`` along S), with the cell's Gaussian or Poisson noise."""
    grid = truth.fine_grid
    moved = dataclasses.replace(grid, center_mm=(*grid.center_mm[:2],
                                                 grid.center_mm[2] + cell.view_shift_mm))
    images = [project_label(truth.fine, seen, [view])[0]
              for seen, view in zip((grid, moved), geometry.views)]
    noise = (NoiseModel("gaussian", cell.noise) if cell.noise else
             NoiseModel("poisson", cell.poisson_photons) if cell.poisson_photons else None)
    if noise is None:
        return images
    rng = np.random.default_rng(cell.seed)
    return [noise.apply(image, rng) for image in images]


def geometry_error_mm(cell: Cell, geometry: CaseGeometry, result, truth: Truth
                      ) -> dict[str, float]:
    """How far view 2's image of the true centrelines lies from where the simulation put it
    (mean, mm at the isocenter), in the geometry given to the fit and in the one it used."""
    view = geometry.views[1]
    points = truth.centerlines.points
    seen = view.project_points(points + np.array([0.0, 0.0, cell.view_shift_mm]))
    pixel_mm = min(view.detector_spacing_mm) * view.source_to_isocenter_mm \
        / view.source_to_detector_mm
    used = CaseGeometry.from_dict({"views": result.record.geometry_used["views"]})

    def error(candidate) -> float:
        distance = np.linalg.norm(candidate.project_points(points) - seen, axis=1)
        return round(float(distance.mean()) * pixel_mm, 3)

    return {"given": error(fit_geometry(cell, geometry).views[1]), "used": error(used.views[1])}


@contextmanager
def cell_inputs(cell: Cell, truth: Truth, geometry: CaseGeometry) -> Iterator[Inputs]:
    """The pipeline inputs of a cell: simulated views with the fit geometry, or two
    synthetic XA runs (written to a temporary folder) read back by the full 2D step."""
    if not cell.xa:
        yield from_arrays(simulated_views(cell, truth, geometry), fit_geometry(cell, geometry))
        return
    runs = simulate_pair(truth.fine, truth.fine_grid, geometry, CineOptions(frames=XA_FRAMES),
                         cell.seed)
    with tempfile.TemporaryDirectory(prefix="sdfcar-xa-") as work:
        yield from_xa_pair(*write_pair(Path(work), runs))


def model_centrelines(result, method: str) -> Centerlines | None:
    """The centrelines with radii a method with a tree model keeps in its run record (what
    the QCA measures), or None for a method without them."""
    statistics = result.record.statistics.get(method)
    lines = statistics.get("centrelines") if isinstance(statistics, dict) else None
    return from_polylines(parse({"vessels": lines})) if lines else None


def run_cell(cell: Cell) -> tuple[dict, np.ndarray]:
    """Simulate, reconstruct (or take the ceiling label) and score one cell; returns its
    record and the label on the reconstruction grid."""
    started = time.perf_counter()
    geometry = CaseGeometry(cell_views(cell))
    grid = geometry.volume
    truth = truth_of(cell.kind, cell.seed, grid, cell.phantom_supersample)
    config = result = fitted = None
    if cell.preset == CEILING:
        label, label_grid = ceiling_label(truth.fine, cell.phantom_supersample), grid
    else:
        config = cell_config(cell)
        with cell_inputs(cell, truth, geometry) as inputs:
            fitted = fit(inputs, config)
            result = finish(fitted)
        label, label_grid = result.label > 0, result.grid
    scores = evaluate(label, truth.label, label_grid, grid, truth.centerlines)
    fine_scores = evaluate(label, truth.fine, label_grid, truth.fine_grid, truth.centerlines)
    record = cell_record(cell, started, scores, config, result)
    record["scores_fine"] = fine_scores
    if result is not None:
        if (lines := model_centrelines(result, config.method)) is not None:
            record["scores_centrelines"] = centerline_scores(lines, truth.centerlines)
        if fitted.reconstruction.resample is not None:  # a model: its outputs at 0.4 mm
            fine = finish(fitted, truth.fine_grid.spacing_mm[0])
            record["scores_output_fine"] = evaluate(fine.label > 0, truth.fine, fine.grid,
                                                    truth.fine_grid, truth.centerlines)
        record["calibration"] = result.record.calibration
        record["geometry_error_mm"] = geometry_error_mm(cell, geometry, result, truth)
    record["simulated_from"] = (f"the tree voxelised at {truth.fine_grid.spacing_mm[0]:g} mm "
                                f"({cell.phantom_supersample}x finer than the grid)")
    return record, label
