"""Turn benchmark records into ``docs/benchmarks.md`` and its figures."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import report_realistic
from tables import cell_value, summary

#: Metrics reported, with whether larger is better.
METRICS = (("dice", True), ("cldice", True), ("ot_1mm", True), ("ot_2mm", True),
           ("iou", True), ("chamfer_mm", False), ("hd95_mm", False),
           ("components_pred", False))
COMMAND = "make benchmark"  # = python benchmarks/run.py (realistic robustness-matrix)


def load_records(results: Path) -> list[dict]:
    """Every ``*.json`` cell record under ``results`` (sorted by name)."""
    return [json.loads(path.read_text()) for path in sorted(results.glob("*.json"))
            if not path.name.startswith("projector_")]


def _group(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        cell = record["cell"]
        groups[(cell["preset"], cell["noise"], record["iterations"])].append(record)
    return groups


def quality_table(records: list[dict]) -> list[str]:
    """Mean and worst case of each metric per preset, noise level and iteration count."""
    header = ["preset", "noise", "cases", "iterations"] + [m for m, _ in METRICS] + [
        "s/iteration", "s total (wall)", "time to solution s", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (preset, noise, iterations), group in sorted(_group(records).items(),
                                                      key=lambda item: str(item[0])):
        cells = [preset, f"{noise:g}", str(len(group)), str(iterations)]
        timing_only = all(r["cell"].get("timing_only") for r in group)
        for metric, larger_is_better in METRICS:
            cells.append("-" if timing_only else summary(
                [cell_value(r, metric) for r in group], larger_is_better))
        mean = lambda key: float(np.mean([r[key] for r in group]))
        extrapolated = any(r["extrapolated"] for r in group)
        cells += [f"{mean('seconds_per_iteration'):.3f}", f"{mean('seconds_total'):.1f}",
                  f"{mean('seconds_to_solution'):.0f}{' (extrapolated)' if extrapolated else ''}",
                  f"{max(r['peak_rss_mb'] for r in group):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_case_table(records: list[dict], presets: tuple[str, str]) -> list[str]:
    """Side by side per phantom (noise-free): Dice, clDice and components of two presets."""
    by_case: dict[str, dict[str, dict]] = defaultdict(dict)
    for record in records:
        cell = record["cell"]
        if cell["noise"] == 0 and cell["preset"] in presets:
            by_case[f"{cell['kind']}{cell['seed']}"][cell["preset"]] = record
    header = ["phantom"] + [f"{p} {m}" for p in presets
                            for m in ("Dice", "clDice", "Ot(1mm)", "components")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, found in sorted(by_case.items()):
        cells = [case]
        for preset in presets:
            record = found.get(preset)
            cells += ([f"{cell_value(record, m):.3f}" for m in ("dice", "cldice", "ot_1mm")]
                      + [str(record["scores"]["components_pred"])] if record else ["-"] * 4)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def robustness_table(records: list[dict]) -> list[str]:
    """clDice and Dice per perturbed setting."""
    lines = ["| phantom | setting | clDice | Dice | Ot(1mm) | components |",
             "|---|---|---|---|---|---|"]
    for record in sorted(records, key=lambda r: r["name"]):
        cell = record["cell"]
        setting = ", ".join(filter(None, [
            f"separation {cell['separation_deg']:g} deg" if cell["separation_deg"] else "",
            f"noise {cell['noise']:g}" if cell["noise"] else "",
            f"rotation error {cell['rotation_error_deg']:g} deg"
            if cell["rotation_error_deg"] else "",
            f"isocenter shift {cell['shift_mm']:g} mm" if cell["shift_mm"] else "",
            f"phantom voxelised {cell.get('phantom_supersample', 1)}x finer"
            if cell.get("phantom_supersample", 1) > 1 else ""]))
        lines.append(f"| {cell['kind']}{cell['seed']} | {setting or 'reference'} | "
                     f"{cell_value(record, 'cldice'):.3f} | "
                     f"{cell_value(record, 'dice'):.3f} | {cell_value(record, 'ot_1mm'):.3f} | "
                     f"{record['scores']['components_pred']} |")
    return lines


def box_plot(records: list[dict], path: Path) -> Path:
    """Box plots of Dice, clDice and Ot(1 mm) per preset (noise-free cells with scores)."""
    figure = Figure(figsize=(10, 3.4), dpi=80)
    FigureCanvasAgg(figure)
    groups = _group([r for r in records
                     if r["cell"]["noise"] == 0 and not r["cell"].get("timing_only")])
    names = sorted(groups, key=str)
    for index, metric in enumerate(("dice", "cldice", "ot_1mm")):
        axes = figure.add_subplot(1, 3, index + 1)
        axes.boxplot([[cell_value(r, metric) for r in groups[name]] for name in names])
        axes.set_xticks(range(1, len(names) + 1), [f"{n[0]}\n{n[2]} it" for n in names],
                        fontsize=8)
        axes.set_title(metric)
        axes.set_ylim(0, 1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def load_label(results: Path, name: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    """A cell's predicted label (saved bit-packed next to its record), if there is one."""
    path = results / f"{name}.label.npz"
    if not path.exists():
        return None
    bits = np.load(path)["label"]
    return np.unpackbits(bits)[: int(np.prod(shape))].reshape(shape).astype(bool)


def showcase(results: Path, path: Path, kind: str = "lca", seed: int = 0,
             presets: tuple[str, ...] = ("field", "neca")) -> Path | None:
    """Ground truth and each preset's label side by side (MIP along y), and both views:
    the simulated target and each preset's reprojection."""
    from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry
    from sdfcar.synthetic.phantom import label_volume
    from sdfcar.synthetic.simulate import project_label

    geometry = CaseGeometry(REFERENCE_VIEWS)
    grid = geometry.volume
    records = {r["cell"]["preset"]: r for r in load_records(results)
               if r["cell"]["suite"] == "quality" and r["cell"]["kind"] == kind
               and r["cell"]["seed"] == seed and r["cell"]["noise"] == 0}
    labels = {p: load_label(results, records[p]["name"], grid.shape)
              for p in presets if p in records}
    labels = {p: v for p, v in labels.items() if v is not None}
    if not labels:
        return None
    truth = label_volume(kind, seed, grid) > 0
    volumes = {"ground truth": truth, **labels}
    figure = Figure(figsize=(3.2 * len(volumes), 9.6), dpi=70)
    FigureCanvasAgg(figure)
    for column, (name, volume) in enumerate(volumes.items()):
        axes = figure.add_subplot(3, len(volumes), column + 1)
        axes.imshow(volume.max(axis=1).T, origin="lower", cmap="gray_r")
        title = name if name == "ground truth" else (
            f"{name}: Dice {records[name]['scores']['dice']:.2f}, "
            f"clDice {records[name]['scores']['cldice']:.2f}")
        axes.set_title(title, fontsize=8)
        axes.set_xlabel("i (R -> L)", fontsize=7)
        axes.set_ylabel("k (I -> S)", fontsize=7)
        for row, image in enumerate(project_label(volume, grid, geometry.views), start=1):
            axes = figure.add_subplot(3, len(volumes), row * len(volumes) + column + 1)
            axes.imshow(image, cmap="gray_r", vmin=0, vmax=8)
            axes.set_title(f"view {row}: {'target' if column == 0 else 'reprojection'}",
                           fontsize=8)
            axes.set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


#: A generated block of a page: its first and last lines (``report_realistic.marked``).
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n).*?(<!-- end generated -->)",
                   re.DOTALL)


def generated_blocks(records: list[dict], gpu: list[dict], docs: Path
                     ) -> dict[str, list[str]]:
    """The tables (and figures, written under ``docs``) a page's marked blocks take, by
    block name; a block whose records are missing keeps what it holds."""
    realistic = [r for r in records if r["cell"]["suite"] == "realistic"]
    matrix = [r for r in records if r["cell"]["suite"] == "robustness-matrix"]
    blocks = {"realistic-headline": report_realistic.headline_table(realistic)} \
        if realistic else {}
    if any("scores_centrelines" in r for r in realistic):
        blocks["realistic-centrelines"] = report_realistic.centreline_table(realistic)
    if gpu:
        blocks["gpu-column"] = report_realistic.gpu_table(gpu)
    if matrix:
        blocks["robustness-matrix"] = report_realistic.matrix_block(matrix, docs)
    return blocks


def fill_blocks(text: str, blocks: dict[str, list[str]]) -> str:
    """``text`` with each marked block it holds replaced by ``blocks[name]`` (blocks it does
    not name are kept as they are); everything outside the markers is kept."""
    def replaced(match: re.Match) -> str:
        name = match["name"]
        if name not in blocks:
            return match.group(0)
        return match.group(1) + "\n".join(blocks[name]) + "\n" + match.group(3)

    return BLOCK.sub(replaced, text)


def write_report(results: Path, docs: Path) -> Path:
    """Regenerate ``docs/benchmarks.md`` (and ``docs/figures/``) from ``results``. A page
    that holds marked blocks keeps its prose: only the blocks are regenerated
    (:func:`fill_blocks`); otherwise the whole page is written."""
    records = load_records(results)
    gpu = load_records(results / "gpu") if (results / "gpu").is_dir() else []
    path = docs / "benchmarks.md"
    if path.is_file() and BLOCK.search(text := path.read_text()):
        path.write_text(fill_blocks(text, generated_blocks(records, gpu, docs)))
        return path
    quality = [r for r in records if r["cell"]["suite"] == "quality"]  # inverse crime
    robustness = [r for r in records if r["cell"]["suite"] == "robustness"]
    lines = ["# Benchmarks", "",
             f"Tables generated by `{COMMAND}` from the records in `benchmarks/results/` "
             "(one JSON per cell, each cell run in its own process; the tables between "
             "`<!-- generated -->` markers are rewritten by each run, the prose around them "
             "is kept). Machine, device, date and commit are those of the records; ratios "
             "compare records made on one machine.", ""]
    if records:
        lines += [f"- {key}s: {', '.join(sorted({str(r[key]) for r in records if key in r}))}"
                  for key in ("machine", "device", "date", "commit")] + [""]
    lines += report_realistic.section(records, docs, gpu)
    lines += _projector_section(results)
    if quality:
        box = box_plot(quality, docs / "figures" / "quality_boxplot.png")
        lines += ["## Sanity rows: views projected on the reconstruction grid", "",
                  "Phantoms lca0-2 and rca0-2 (`sdfcar phantom`), 128^3 at 0.8 mm, two 512^2 "
                  "views at 0.278 mm (DESIGN.md geometry). Each metric: mean (worst case). "
                  "Noise: Gaussian, sigma as a fraction of each view's maximum. `time to "
                  "solution` adds the preset's remaining iterations at the measured seconds "
                  "per iteration where a cell ran fewer (marked extrapolated).", "",
                  "**Read these scores with care.** The views are projected from each "
                  "phantom's label on the 0.8 mm grid the reconstruction uses (an inverse "
                  "crime: a binary voxel solution reproduces the data exactly). From the same "
                  "trees voxelised at 0.4 mm the field preset scores far lower (robustness "
                  "rows 'phantom voxelised 2x finer'); see docs/reconstruction-notes.md.", ""]
        lines += quality_table(quality) + [""]
        lines += _ratio(quality)
        lines += ["### Per phantom, noise-free", ""] + per_case_table(
            quality, ("field", "neca")) + [""]
        lines += [f"![quality]({box.relative_to(docs).as_posix()})", ""]
        shown = showcase(results, docs / "figures" / "showcase_lca0.png")
        if shown is not None:
            lines += ["Phantom lca0, noise-free: ground truth and reconstructions (maximum "
                      "intensity projection along y), and both views: the simulated target and "
                      "the reprojection of each label.", "",
                      f"![showcase]({shown.relative_to(docs).as_posix()})", ""]
        lines += [f"Notes: {note}" for note in sorted({r['cell']['note'] for r in quality
                                                       if r['cell']['note']})] + [""]
    if robustness:
        lines += ["## Robustness (field preset, the former default)", "",
                  "View separation: LAO/RAO pairs at +-separation/2 with no cranial tilt; "
                  "rotation error: added to view 2's primary angle given to the fit (not to the "
                  "simulation); isocenter shift: the tree is displaced along x in the "
                  "simulation only (its grid is moved by that much); phantom voxelised finer: the views "
                  "are projected from the tree voxelised at half the spacing (0.4 mm) on the "
                  "same field, so they are no longer exactly what a label on the 0.8 mm "
                  "reconstruction grid projects to (every other row simulates on that grid).", ""]
        lines += robustness_table(robustness) + [""]
    lines += _snippets(results)
    docs.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _ratio(records: list[dict]) -> list[str]:
    paper = [r for r in records if r["cell"]["preset"] == "sdfcar-paper"]
    ours = [r for r in records if r["cell"]["preset"] == "field" and r["cell"]["noise"] == 0]
    if not paper or not ours:
        return []
    paper_seconds = np.mean([r["seconds_to_solution"] for r in paper])
    our_seconds = np.mean([r["seconds_total"] for r in ours])
    return [f"Time to solution, `sdfcar-paper` / `field`: {paper_seconds:.0f} s / "
            f"{our_seconds:.1f} s = **{paper_seconds / our_seconds:.0f}x** (paper: measured "
            "seconds per iteration x 5000 iterations; field: measured wall time per case, "
            "simulation included).", ""]


def _snippets(results: Path) -> list[str]:
    """Sections other benchmark scripts saved as Markdown (``results/*.md``), verbatim."""
    return [line for path in sorted(results.glob("*.md"))
            for line in path.read_text().rstrip().splitlines() + [""]]


def _projector_section(results: Path) -> list[str]:
    records = [json.loads(p.read_text()) for p in sorted(results.glob("projector_*.json"))]
    if not records:
        return []
    lines = ["## Projector: forward + backward, two 512x512 views of a 128^3 volume", "",
             "Command: `make bench` (`benchmarks/projector_speed.py`), median of repeated runs "
             "after a warm-up; loss = sum of per-view MSE.", "",
             "| device | forward, 2 views (s) | forward + backward, 2 views (s) | peak RSS MB "
             "| date | commit |", "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['device_name']} | {r['seconds_forward_two_views']} | "
                     f"{r['seconds_forward_backward_two_views']} | {r['peak_rss_mb']} | "
                     f"{r['date']} | {r['commit']} |")
    return lines + [""]
