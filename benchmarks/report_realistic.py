"""Tables and figures of the realistic suites (``realistic``, ``robustness-matrix``,
``calibration``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tables import cell_value, summary

COMMAND = ("python benchmarks/run.py realistic robustness-matrix "
           "[--presets sdf-tree,field] [--iterations neca=100] [--cases lca0] [--limit N]")
#: Headline metrics: key, column title, larger is better (None: closest to 0 is best).
HEADLINE = (("dice", "Dice", True), ("cldice", "clDice", True), ("ot_1mm", "Ot(1mm)", True),
            ("cl_precision_1mm", "CL prec 1mm", True), ("cl_recall_1mm", "CL rec 1mm", True),
            ("cl_median_mm", "CL median mm", False),
            ("radius_error_mm", "radius err mm", False),
            ("length_error_pct", "length err %", None))
KINDS = {"lca": "LCA", "rca": "RCA", "lumens": "lumens (2nd generator)"}
#: Robustness-matrix axes: cell field -> axis title.
AXES = {"separation_deg": "view separation (deg)",
        "rotation_error_deg": "rotation error, primary (deg)",
        "rotation_secondary_error_deg": "rotation error, secondary (deg)",
        "isocenter_error_mm": "isocenter error, view 2 (mm)",
        "view_shift_mm": "tree shift in view 2 only, S (mm)",
        "noise": "Gaussian noise (fraction of max)"}

DESCRIPTION = [
    "Views are simulated from each tree voxelised at 0.4 mm (`grid.refined(2)`, never the "
    "0.8 mm reconstruction grid) at the reference geometry (two 512^2 views). Phantoms: "
    "lca0-3 and rca0-3 (`sdfcar.synthetic.phantom`) and lumens0 "
    "(`sdfcar.synthetic.lumens`: an independent generator with Murray bifurcations, "
    "elliptical lumens, a stenosis and 0.28-0.36 mm distal radii). Conditions: noise-free, "
    "Gaussian 2 % and 5 % (of each view's maximum), Poisson at a clinical dose (1700 photons "
    "per pixel: the XA simulator's flux behind 200 mm of water) and two synthetic XA DICOM "
    "runs (12 frames) through the full 2D pipeline. Scores against the tree's label on the "
    "0.8 mm grid and (`@0.4mm`) against its 0.4 mm label; centreline metrics against the "
    "true centrelines and radii. The ceiling row scores the 0.4 mm label averaged onto the "
    "0.8 mm grid and thresholded at 0.5: what a perfect 0.8 mm label achieves. Each metric: "
    "mean (worst case) over the phantoms of a kind. A cell is marked under load when the "
    "1-minute load average exceeded 1.5 at its start or end (three quarters of the cores "
    "on a larger machine).",
    "",
    f"Command (resumable, one process per cell, progress bar): `{COMMAND}`.",
]


def condition(cell: dict) -> str:
    """Acquisition condition of a cell in words."""
    if cell.get("xa"):
        return "XA DICOM"
    if cell.get("poisson_photons"):
        return f"Poisson {cell['poisson_photons']:g} photons/pixel"
    if cell.get("noise"):
        return f"Gaussian {100 * cell['noise']:g} %"
    return "noise-free"


def _loaded(group: list[dict]) -> str:
    count = sum(bool(r.get("under_load")) for r in group)
    return f"{count}/{len(group)}" if count else "no"


def _time(group: list[dict]) -> str:
    seconds = [r["seconds_to_solution"] for r in group if "seconds_to_solution" in r]
    if not seconds:
        return "-"
    extrapolated = any(r.get("extrapolated") for r in group)
    return f"{np.mean(seconds):.0f}{' (extrapolated)' if extrapolated else ''}"


def headline_table(records: list[dict]) -> list[str]:
    """Mean (worst) per preset, condition and kind; the ceiling rows first."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        cell = record["cell"]
        key = (cell["preset"] != "ceiling", cell["preset"], condition(cell), cell["kind"])
        groups[key].append(record)
    header = (["preset", "condition", "kind", "cases", "iterations"]
              + [title for _, title, _ in HEADLINE]
              + ["Dice @0.4mm", "clDice @0.4mm", "s total", "time to solution s",
                 "peak RSS MB", "under load"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(groups):
        group = groups[key]
        _, preset, words, kind = key
        fine = [{"scores": r["scores_fine"]} for r in group]
        cells = [preset, "-" if preset == "ceiling" else words, KINDS.get(kind, kind),
                 str(len(group)), str(group[0].get("iterations", "-"))]
        cells += [summary([cell_value(r, metric) for r in group], better)
                  for metric, _, better in HEADLINE]
        cells += [summary([cell_value(r, "dice") for r in fine], True),
                  summary([cell_value(r, "cldice") for r in fine], True),
                  f"{np.mean([r['seconds_total'] for r in group]):.1f}", _time(group),
                  f"{max(r['peak_rss_mb'] for r in group):.0f}", _loaded(group)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


#: Scores of a tree model's own centrelines (``scores_centrelines``), as the QCA sees them.
CENTRELINE_METRICS = (("length_error_pct", "total length err %", None),
                      ("radius_error_mm", "median radius err mm", False),
                      ("cl_recall_1mm", "CL rec 1mm", True),
                      ("cl_precision_1mm", "CL prec 1mm", True),
                      ("cl_median_mm", "CL median mm", False))


def centreline_table(records: list[dict]) -> list[str]:
    """Mean (worst) per preset, condition and kind of the cells whose method keeps a model:
    Dice at 0.4 mm of the 0.8 mm label resampled and of the model's own 0.4 mm output (when
    recorded), then the model-centreline scores."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        if "scores_centrelines" in record:
            cell = record["cell"]
            groups[(cell["preset"], condition(cell), cell["kind"])].append(record)
    header = (["preset", "condition", "kind", "cases", "Dice @0.4mm (0.8 mm label)",
               "Dice @0.4mm (output at 0.4 mm)"] + [t for _, t, _ in CENTRELINE_METRICS])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (preset, words, kind), group in sorted(groups.items()):
        output = [{"scores": r.get("scores_output_fine", {})} for r in group]
        lines.append("| " + " | ".join(
            [preset, words, KINDS.get(kind, kind), str(len(group)),
             summary([cell_value({"scores": r["scores_fine"]}, "dice") for r in group], True),
             summary([cell_value(r, "dice") for r in output], True)]
            + [summary([cell_value({"scores": r["scores_centrelines"]}, metric)
                        for r in group], better)
               for metric, _, better in CENTRELINE_METRICS]) + " |")
    return lines


def _axis_of(cell: dict) -> tuple[str | None, float]:
    """The matrix axis a cell lies on and its error (``(None, 0)``: the error-free cell)."""
    for field in AXES:
        if cell.get(field):
            return field, float(cell[field])
    return None, 0.0


def matrix_points(records: list[dict]) -> dict[str, dict[str, list[tuple[float, dict]]]]:
    """preset -> axis -> sorted ``(error, record)``; the error-free cell starts every axis
    but the view separation (the reference views have their own)."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        field, error = _axis_of(record["cell"])
        targets = [field] if field else [f for f in AXES if f != "separation_deg"]
        for target in targets:
            out[record["cell"]["preset"]][target].append((error, record))
    return {preset: {axis: sorted(points, key=lambda p: p[0]) for axis, points in axes.items()}
            for preset, axes in out.items()}


def matrix_figure(records: list[dict], path: Path) -> Path:
    """Dice (top) and clDice (bottom) against each error, one line per preset."""
    points = matrix_points(records)
    figure = Figure(figsize=(3.0 * len(AXES), 6.0), dpi=70)
    FigureCanvasAgg(figure)
    for column, (axis, title) in enumerate(AXES.items()):
        for row, metric in enumerate(("dice", "cldice")):
            plot = figure.add_subplot(2, len(AXES), row * len(AXES) + column + 1)
            for preset in sorted(points):
                line = points[preset].get(axis, [])
                if line:
                    plot.plot([e for e, _ in line], [cell_value(r, metric) for _, r in line],
                              marker="o", label=preset)
            plot.set_ylim(0, 1)
            plot.set_xlabel(title, fontsize=8)
            plot.set_ylabel(metric, fontsize=8)
            if row == 0 and column == 0:
                plot.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def matrix_table(records: list[dict]) -> list[str]:
    """Dice / clDice per setting (rows) and preset (columns)."""
    presets = sorted({r["cell"]["preset"] for r in records})
    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for record in records:
        field, error = _axis_of(record["cell"])
        rows[(field or "", error)][record["cell"]["preset"]] = record
    lines = ["| setting | " + " | ".join(f"{p} Dice / clDice" for p in presets) + " |",
             "|---|" + "---|" * len(presets)]
    for (field, error), found in sorted(rows.items()):
        setting = f"{AXES[field]} = {error:g}" if field else "no error (reference views)"
        values = [f"{cell_value(found[p], 'dice'):.3f} / {cell_value(found[p], 'cldice'):.3f}"
                  if p in found else "-" for p in presets]
        lines.append(f"| {setting} | " + " | ".join(values) + " |")
    return lines


def _errors_of(cell: dict) -> str:
    """The calibration suite's name of a cell's errors."""
    from realistic import CALIBRATION_ERRORS

    for name, fields in CALIBRATION_ERRORS.items():
        if all(cell[key] == value for key, value in fields.items()) and not any(
                cell[key] for key in ("rotation_error_deg", "rotation_secondary_error_deg",
                                      "isocenter_error_mm", "view_shift_mm")
                if key not in fields):
            return name
    return "other"


def calibration_table(records: list[dict]) -> list[str]:
    """Per error (rows) and preset x calibration mode (columns): Dice mean (worst), the
    geometry error left (mm, mean over phantoms) and the phantoms' count."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        cell = record["cell"]
        groups[(_errors_of(cell), f"{cell['preset']} calibration {cell['calibration']}")].append(
            record)
    columns = sorted({column for _, column in groups})
    lines = ["| view-2 error | " + " | ".join(f"{c}: Dice, geometry error mm" for c in columns)
             + " |", "|---|" + "---|" * len(columns)]
    for error in dict.fromkeys(_errors_of(r["cell"]) for r in records):
        values = []
        for column in columns:
            group = groups.get((error, column), [])
            if not group:
                values.append("-")
                continue
            dice = summary([cell_value(r, "dice") for r in group], True)
            left = np.mean([r["geometry_error_mm"]["used"] for r in group])
            values.append(f"{dice}, {left:.2f} (n={len(group)}, under load: {_loaded(group)})")
        lines.append(f"| {error} | " + " | ".join(values) + " |")
    return lines


GPU_DESCRIPTION = [
    "The same cells run on a lent GPU machine (one NVIDIA H200, 16 CPU cores) with device "
    "`auto`, i.e. CUDA for the refinement, by `bash benchmarks/device_suite.sh COMMIT SECONDS "
    "realistic --presets sdf-tree --cases ...` (records in `benchmarks/results/gpu/`). The "
    "tracer runs on the CPU there too (NumPy, one forked process per core), so the stage "
    "seconds say where the time goes. Only the cells that finished inside the machine's "
    "time are listed; the seconds exclude the process start.",
]


def matrix_block(records: list[dict], docs: Path) -> list[str]:
    """The robustness matrix's figure (written to ``docs/figures/``) and table."""
    figure = matrix_figure(records, docs / "figures" / "robustness_matrix.png")
    return [f"![robustness matrix]({figure.relative_to(docs).as_posix()})", "",
            *matrix_table(records)]


def marked(name: str, lines: list[str]) -> list[str]:
    """``lines`` between the markers of block ``name``: what a later report run replaces in a
    page that also holds prose written by hand (``report.fill_blocks``)."""
    return [f"<!-- generated: {name} -->", *lines, "<!-- end generated -->"]


def gpu_table(records: list[dict]) -> list[str]:
    """The realistic cells run on a GPU machine: headline table and stage seconds."""
    lines = headline_table(records) + [""]
    staged = [r for r in records if r.get("stage_seconds")]
    if staged:
        stages = sorted({stage for r in staged for stage in r["stage_seconds"]})
        lines += ["| cell | machine | commit | " + " | ".join(f"{s} s" for s in stages)
                  + " | reconstruct s |", "|" + "---|" * (len(stages) + 4)]
        lines += [f"| {r['name']} | {r['machine']} | {r['commit']} | "
                  + " | ".join(str(r["stage_seconds"].get(s, "-")) for s in stages)
                  + f" | {r['seconds_reconstruct']:.1f} |" for r in staged]
    return lines


def section(records: list[dict], docs: Path, gpu: list[dict] = ()) -> list[str]:
    """The Markdown of the realistic suites (empty without their records); ``gpu``: the
    realistic cells run on a GPU machine."""
    quality = [r for r in records if r["cell"]["suite"] == "realistic"]
    matrix = [r for r in records if r["cell"]["suite"] == "robustness-matrix"]
    lines = ["## Realistic quality (headline: no inverse crime)", ""] + DESCRIPTION + [""]
    calibration = [r for r in records if r["cell"]["suite"] == "calibration"]
    if not quality and not matrix and not calibration:
        return lines + ["No records of the realistic suites yet.", ""]
    if quality:
        lines += marked("realistic-headline", headline_table(quality)) + [""]
    if any("scores_centrelines" in r for r in quality):
        lines += ["Methods with a tree model: Dice against the 0.4 mm truth of the 0.8 mm "
                  "label resampled and of the label the model writes on a 0.4 mm grid "
                  "(`--output-spacing 0.4`), then the model's own centrelines with radii "
                  "against the true ones (what the QCA measures; the table above scores "
                  "the label's skeleton): total length error, median radius error of the "
                  "samples within 1 mm of the truth, centreline recall and precision at "
                  "1 mm.", ""]
        lines += marked("realistic-centrelines", centreline_table(quality)) + [""]
    if gpu:
        lines += ["### GPU column", ""] + GPU_DESCRIPTION + [""]
        lines += marked("gpu-column", gpu_table(list(gpu))) + [""]
    if matrix:
        lines += ["## Robustness matrix (every preset, lca0)", "",
                  "Errors go into the geometry given to the fit only (rotation: view 2's "
                  "primary or secondary angle; isocenter: view 2's principal point moved by "
                  "the error times SID/SOD), or, for the shift, into view 2's simulation "
                  "only (the tree moved head-feet); view separation: LAO/RAO pairs at "
                  "+-separation/2 without cranial tilt.", ""]
        lines += marked("robustness-matrix", matrix_block(matrix, docs)) + [""]
    if calibration:
        lines += ["## Self-calibration (views from 0.4 mm trees)", "",
                  "View 2's geometry given to the fit is off (or the tree moved head-feet in "
                  "view 2's simulation); `calibration auto` corrects it (`sdfcar.pipeline."
                  "calibration`, then the tree method's joint pose refinement), `off` takes "
                  "it as given. Geometry error: mean distance (mm at the isocenter) between "
                  "view 2's image of the true centrelines in the geometry used and where the "
                  "simulation put them. Command: `python benchmarks/run.py calibration "
                  "[--presets sdf-tree,tubes] [--cases lca0]`.", ""]
        lines += calibration_table(calibration) + [""]
    return lines
