"""Real-data path against the simulated one: the same phantom from line integrals and from
synthetic XA DICOM runs.

For each phantom and preset: (a) its noise-free line integrals in the two reference views
are reconstructed directly; (b) the same phantom is written as two XA cine runs
(`sdfcar.synthetic.xa`: Beer-Lambert contrast, background anatomy, Poisson noise, wash-in,
cardiac motion, ECG marks; 12-bit LIN), read back with
`sdfcar.xa.prepare_xa_pair` (geometry from the tags, automatic frame choice, extracted vessel
masks and line-integral proxies) and reconstructed with the masks as silhouettes. Both labels
are scored against the phantom. Both paths see the phantom voxelised
``--phantom-supersample`` times finer than the reconstruction grid (default 2; 1 is the
"inverse crime" of docs/reconstruction-notes.md, where the voxel prior fits exact data).
Writes benchmarks/results/xa_vs_simulated.md (appended to
docs/benchmarks.md by `python benchmarks/run.py --report-only`).

Usage: python benchmarks/xa_vs_simulated.py [--cases lca:0 rca:0] [--detector 512]
           [--volume 128] [--iterations N] [--frames 24] [--presets field tubes]
           [--phantom-supersample 2] [--device auto]
           [--out benchmarks/results/xa_vs_simulated.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from sdfcar.config import build_config
from sdfcar.device import resolve_device
from sdfcar.geometry import VolumeGrid
from sdfcar.metrics import evaluate
from sdfcar.synthetic.phantom import label_volume
from sdfcar.pipeline.run import reconstruct
from sdfcar.synthetic.simulate import project_label
from sdfcar.xa import prepare_xa_pair
from sdfcar.synthetic.xa import CineOptions, phantom_pair, write_pair

ROOT = Path(__file__).resolve().parent.parent
#: The reference volume spans 102.4 mm; smaller --volume sizes keep that field.
FIELD_MM = 102.4


def run_case(kind: str, seed: int, detector: int, volume: VolumeGrid, frames: int,
             configs: list, supersample: int, work: Path) -> list[dict]:
    """Both paths for one phantom and every preset; a row per path and preset."""
    label, geometry, runs = phantom_pair(kind, seed, detector, CineOptions(frames=frames),
                                         volume, supersample)
    fine = volume.refined(supersample)
    integrals = project_label(label_volume(kind, seed, fine), fine, geometry.views)
    started = time.perf_counter()
    paths = write_pair(work / f"{kind}{seed}", runs)
    pair = prepare_xa_pair(*paths, volume=volume)
    prepare_seconds = time.perf_counter() - started
    frames_used = ", ".join(f"{v['frame']['number']} ({v['frame']['rule']})"
                            for v in pair.report["views"])
    rows = []
    for config in configs:
        started = time.perf_counter()
        result = reconstruct(integrals, geometry, config)
        rows.append(_row(kind, seed, config.preset, "simulated integrals", result, label,
                         volume, started, ""))
        started = time.perf_counter() - prepare_seconds
        result = reconstruct(pair.case.views, pair.case.geometry, config, masks=pair.masks)
        rows.append(_row(kind, seed, config.preset, "XA DICOM", result, label, volume, started,
                         frames_used))
    return rows


def _row(kind, seed, preset, path, result, label, volume, started, frames) -> dict:
    scores = evaluate(result.label > 0, label > 0, result.grid, volume)
    return {"case": f"{kind}{seed}", "preset": preset, "path": path, "dice": scores["dice"],
            "cldice": scores["cldice"], "ot_1mm": scores["ot_1mm"],
            "components": result.record.components, "target": result.record.target,
            "seconds": time.perf_counter() - started, "frames": frames}


def table(rows: list[dict]) -> list[str]:
    """Markdown table of every row."""
    lines = ["| case | preset | path | Dice | clDice | Ot(1mm) | components | target | seconds "
             "| frames used |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['preset']} | {r['path']} | {r['dice']:.3f} | "
              f"{r['cldice']:.3f} | "
              f"{r['ot_1mm']:.3f} | {r['components']} | {r['target']} | {r['seconds']:.1f} | "
              f"{r['frames'] or '-'} |" for r in rows]
    return lines


def margins(rows: list[dict]) -> list[str]:
    """Per case and preset: the XA path's Dice minus the simulated path's."""
    lines = ["| case | preset | Dice simulated | Dice XA | XA - simulated |",
             "|---|---|---|---|---|"]
    for sim in (r for r in rows if r["path"] == "simulated integrals"):
        xa = next(r for r in rows if r["path"] == "XA DICOM" and r["case"] == sim["case"]
                  and r["preset"] == sim["preset"])
        lines.append(f"| {sim['case']} | {sim['preset']} | {sim['dice']:.3f} | "
                     f"{xa['dice']:.3f} | {xa['dice'] - sim['dice']:+.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["lca:0", "rca:0"], metavar="KIND:SEED")
    parser.add_argument("--detector", type=int, default=512, help="detector pixels per side "
                        "(the 142 mm panel of the reference geometry; default 512)")
    parser.add_argument("--volume", type=int, default=128, help="voxels per side over the "
                        f"reference {FIELD_MM:g} mm field (default 128, 0.8 mm)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="field iterations (default: the preset's)")
    parser.add_argument("--frames", type=int, default=24, help="frames per cine run")
    parser.add_argument("--presets", nargs="+", default=["field", "tubes"])
    parser.add_argument("--phantom-supersample", type=int, default=2,
                        help="simulate from the phantom voxelised this many times finer "
                             "(1: on the reconstruction grid itself, the inverse crime)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "xa_vs_simulated.md")
    args = parser.parse_args()
    volume = VolumeGrid((args.volume,) * 3, (FIELD_MM / args.volume,) * 3)
    configs = [build_config(preset, iterations=args.iterations, device=args.device)
               for preset in args.presets]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for case in args.cases:
            kind, _, seed = case.partition(":")
            rows += run_case(kind, int(seed or 0), args.detector, volume, args.frames, configs,
                             args.phantom_supersample, Path(work))
    command = "python benchmarks/xa_vs_simulated.py " + " ".join(sys.argv[1:])
    lines = ["## Real-data path: XA DICOM against simulated integrals", "",
             f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')}). Each phantom is "
             "reconstructed from its noise-free line integrals and from two synthetic XA "
             "cine runs of it (`sdfcar.synthetic.xa`: Beer-Lambert contrast, anatomy, Poisson "
             "noise, wash-in, cardiac motion, ECG; 12-bit) read back through "
             "`sdfcar.xa.prepare_xa_pair` (geometry from the tags, automatic frame, extracted "
             "masks as silhouettes, line-integral proxies as targets). Seconds include the "
             "2D step on the XA path.", "",
             f"Setup: {args.volume}^3 grid at {FIELD_MM / args.volume:.3g} mm, two "
             f"{args.detector}^2 views (reference angles), {args.frames} frames per run, "
             f"phantom voxelised {args.phantom_supersample}x finer than the grid, presets "
             f"{', '.join(args.presets)}, device {resolve_device(configs[0].device)}; "
             f"torch {torch.__version__} on {platform.machine()}.", ""] + table(rows) \
        + [""] + margins(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
