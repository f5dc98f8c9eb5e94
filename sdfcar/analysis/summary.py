"""The quantitative coronary analysis of one reconstruction, as the pipeline records it and
``sdfcar qca`` prints it.

:func:`analyse` takes the run record's centrelines and the acquired views and gives the
QCA table (one row per vessel: :data:`~sdfcar.analysis.qca.COLUMNS`, then foreshortening and
overlap in each acquired view), the bifurcation angles, and the working-view map of a target:
the named vessel, or by default the lesion with the highest percent diameter stenosis
(``LESION_MARGIN_MM`` either side of it), or ``vessel 1`` when no vessel has a lesion.
A named vessel is its own target, whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.analysis.qca import COLUMNS, bifurcation_angles, vessel_qca
from sdfcar.analysis.tree import STEP_MM, CentrelineTree, Vessel
from sdfcar.analysis.views import OverlapPairs, ViewMap, foreshortening, working_view_map
from sdfcar.errors import bad_input
from sdfcar.geometry import ViewGeometry

#: A lesion's working view covers it and this much of the vessel on each side (mm).
LESION_MARGIN_MM = 5.0
DEFINITIONS = "docs/qca.md"


@dataclass(frozen=True)
class Target:
    """The centreline stretch the working views are chosen for."""

    vessel: str
    start_mm: float
    end_mm: float
    kind: str  # "lesion" or "vessel"


@dataclass(frozen=True)
class Analysis:
    """QCA table, bifurcation angles and working views of one centreline tree."""

    tree: CentrelineTree
    rows: list[dict[str, Any]]
    bifurcations: list[dict[str, Any]]
    views: tuple[ViewGeometry, ...]
    target: Target
    view_map: ViewMap

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns: :data:`~sdfcar.analysis.qca.COLUMNS` and the view columns."""
        return COLUMNS + view_columns(len(self.views))

    def record(self) -> dict[str, Any]:
        """The run record's ``qca`` section."""
        target = self.target
        return {"available": True, "definitions": DEFINITIONS, "step_mm": STEP_MM,
                "views": [view.to_dict() for view in self.views],
                "topology": self.tree.topology(),
                "vessels": [_rounded(row) for row in self.rows],
                "bifurcations": [_rounded(row) for row in self.bifurcations],
                "working_views": {"vessel": target.vessel, "target": target.kind,
                                  "segment_mm": [round(target.start_mm, 2),
                                                 round(target.end_mm, 2)],
                                  "reference_view": 1, **self.view_map.to_dict()}}


def compact(section: dict[str, Any]) -> dict[str, Any]:
    """A ``qca`` section without its map grids, views and topology: the table, the
    bifurcation angles and the best working views (what MONAI Label answers with)."""
    if not section.get("available"):
        return dict(section)
    views = section["working_views"]
    return {"available": True, "definitions": section["definitions"],
            "vessels": section["vessels"], "bifurcations": section["bifurcations"],
            "working_views": {key: views[key] for key in ("vessel", "target", "segment_mm",
                                                          "best")}}


def view_columns(count: int) -> tuple[str, ...]:
    """``foreshortening_view1, overlap_view1, ...`` for ``count`` views."""
    return tuple(f"{kind}_view{n}" for n in range(1, count + 1)
                 for kind in ("foreshortening", "overlap"))


def unavailable(method: str) -> dict[str, Any]:
    """The ``qca`` section of a method without centrelines."""
    return {"available": False,
            "reason": f"the {method} method gives a label, not centrelines with radii "
                      "(QCA needs the tubes or tree method, e.g. --preset sdf-tree)"}


def of_reconstruction(method: str, statistics: dict[str, Any],
                      views: Sequence[ViewGeometry]) -> tuple[Analysis | None, dict[str, Any]]:
    """The analysis of a method's ``statistics`` (its ``centrelines``) and the run record's
    ``qca`` section; no analysis, and the reason in the section, without centrelines."""
    centrelines = statistics.get("centrelines")
    if centrelines is None:
        return None, unavailable(method)
    analysis = analyse(centrelines, views, where=f"statistics.{method}.centrelines")
    return analysis, analysis.record()


def analyse(centrelines: Any, views: Sequence[ViewGeometry], vessel: str | None = None,
            where: str = "centrelines") -> Analysis:
    """QCA of the record's ``centrelines`` seen in ``views``; working views for ``vessel``
    (default: see the module docstring)."""
    tree = CentrelineTree.from_record(centrelines, where)
    rows = []
    for item in tree.vessels:
        row = vessel_qca(item)
        pairs = _pairs(tree, item, np.ones(len(item.points), bool))
        for n, view in enumerate(views, 1):
            row[f"foreshortening_view{n}"] = foreshortening(item.points, view)
            row[f"overlap_view{n}"] = pairs.overlap(view)
        rows.append(row)
    bifurcations = [bifurcation_angles(tree, junction) for junction in tree.junctions]
    target = choose_target(tree, rows, vessel)
    chosen = tree.vessel(target.vessel)
    arc = chosen.arc
    inside = (arc >= target.start_mm - 1e-9) & (arc <= target.end_mm + 1e-9)
    view_map = working_view_map(chosen.points[inside], _pairs(tree, chosen, inside), views[0])
    return Analysis(tree, rows, bifurcations, tuple(views), target, view_map)


def choose_target(tree: CentrelineTree, rows: list[dict[str, Any]], vessel: str | None
                  ) -> Target:
    """The working views' target (module docstring)."""
    if vessel is not None:
        named = tree.vessel(vessel)
        return Target(named.name, 0.0, named.length_mm, "vessel")
    lesions = [row for row in rows if row["lesion_length_mm"] > 0]
    if not lesions:
        first = tree.vessels[0]
        return Target(first.name, 0.0, first.length_mm, "vessel")
    worst = max(lesions, key=lambda row: row["diameter_stenosis_pct"])
    return Target(worst["vessel"], max(worst["lesion_start_mm"] - LESION_MARGIN_MM, 0.0),
                  min(worst["lesion_end_mm"] + LESION_MARGIN_MM, worst["length_mm"]), "lesion")


def _pairs(tree: CentrelineTree, vessel: Vessel, inside: np.ndarray) -> OverlapPairs:
    """Overlap pairs of ``vessel``'s samples ``inside`` against every other vessel."""
    others = [v for v in tree.vessels if v.name != vessel.name]
    points = np.concatenate([v.points for v in others]) if others else np.zeros((0, 3))
    radii = np.concatenate([v.radii for v in others]) if others else np.zeros(0)
    return OverlapPairs.build(vessel.points[inside], vessel.radii[inside], points, radii)


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its floats (also those of nested dicts) rounded to 3 decimals."""
    return {key: round(value, 3) if isinstance(value, float)
            else _rounded(value) if isinstance(value, dict) else value
            for key, value in row.items()}


def load_folder(recon_dir: str | Path, vessel: str | None = None) -> Analysis:
    """:func:`analyse` of a reconstruction folder's ``run.json`` (its method's centrelines and
    the ``qca`` section's views); one-line errors name the file and the field."""
    path = Path(recon_dir) / "run.json"
    if not Path(recon_dir).is_dir():
        raise bad_input(str(recon_dir), "not a reconstruction folder (not a folder)")
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise bad_input(str(path), "file not found (not a reconstruction folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_input(str(path), f"not readable JSON ({error.__class__.__name__})") from None
    section = record.get("qca") if isinstance(record, dict) else None
    if not isinstance(section, dict):
        raise bad_input(f"{path}: qca", "missing (written by an sdfcar without QCA, or not a "
                                        "run record)")
    if not section.get("available"):
        raise bad_input(f"{path}: qca", f"not available: {section.get('reason', 'no reason')}")
    method = record.get("method")
    statistics = record.get("statistics")
    own = statistics.get(method) if isinstance(statistics, dict) else None
    centrelines = own.get("centrelines") if isinstance(own, dict) else None
    views = section.get("views")
    if not isinstance(views, list) or not views:
        raise bad_input(f"{path}: qca.views", "expected a list of views")
    parsed = [ViewGeometry.from_dict(v, f"{path}: qca.views[{n}]") for n, v in enumerate(views)]
    return analyse(centrelines, parsed, vessel, f"{path}: statistics.{method}.centrelines")


#: Columns ``sdfcar qca`` prints: (heading, column, format).
PRINTED = (("vessel", "vessel", "{}"), ("parent", "parent", "{}"),
           ("length", "length_mm", "{:.1f}"), ("tort.", "tortuosity", "{:.2f}"),
           ("r prox", "radius_proximal_mm", "{:.2f}"), ("r dist", "radius_distal_mm", "{:.2f}"),
           ("MLD", "mld_mm", "{:.2f}"), ("at", "mld_position_mm", "{:.1f}"),
           ("ref", "reference_diameter_mm", "{:.2f}"), ("DS %", "diameter_stenosis_pct",
                                                         "{:.0f}"),
           ("lesion", "lesion_length_mm", "{:.1f}"), ("FS v1 %", "foreshortening_view1", "{:.0%}"),
           ("FS v2 %", "foreshortening_view2", "{:.0%}"))


def format_report(analysis: Analysis) -> str:
    """The QCA table, the bifurcation angles and the best working views as text."""
    table = [[heading for heading, _, _ in PRINTED]]
    table += [[_cell(row.get(key), fmt) for _, key, fmt in PRINTED] for row in analysis.rows]
    widths = [max(len(line[n]) for line in table) for n in range(len(PRINTED))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths))
             for line in table]
    lines.append("lengths, positions, radii and diameters in mm; DS: diameter stenosis; "
                 f"FS: foreshortening in the acquired views (definitions: {DEFINITIONS})")
    for bifurcation in analysis.bifurcations:
        angles = [f"{name} {_degrees(bifurcation[key])}" for name, key in
                  (("distal", "angle_distal_deg"), ("proximal", "angle_proximal_deg"))]
        angles += [f"{sibling} {_degrees(angle)}"
                   for sibling, angle in bifurcation["angle_sibling_deg"].items()]
        lines.append(f"bifurcation {bifurcation['parent']} -> {bifurcation['branch']} at "
                     f"{bifurcation['junction_arc_mm']:.1f} mm: {', '.join(angles)}")
    target = analysis.target
    lines.append(f"working views for {target.vessel} ({target.kind}, {target.start_mm:.1f}-"
                 f"{target.end_mm:.1f} mm):")
    for best in analysis.view_map.best():
        lines.append(f"  primary {best['primary_deg']:+.0f} secondary "
                     f"{best['secondary_deg']:+.0f}: foreshortening "
                     f"{_cell(best['foreshortening'], '{:.1%}')} %, overlap "
                     f"{_cell(best['overlap'], '{:.1%}')} %")
    return "\n".join(lines)


def _cell(value: Any, fmt: str) -> str:
    """A table cell: ``-`` for None, numbers without a minus sign on zero."""
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 5e-4:
        value = 0.0
    return fmt.format(value).rstrip("%")


def _degrees(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} deg"
