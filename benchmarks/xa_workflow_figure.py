"""The raw-XA workflow as the Slicer module shows it, rendered from real outputs: each
angiogram at its chosen frame with the engine's vessel mask outlined (the slice-view
overlay of "View N vessel mask") and the reconstructed centrelines coloured by radius (the
markups curves in the 3D view), seen along view 1's beam.

Two XA DICOM runs go through ``sdfcar reconstruct --view1 --view2`` (the command the module
runs, with the default preset, ``sdf-tree``; the committed figure was made with ``tubes``, the
XA default then), then the figure is drawn from the output folder. Without
``--view1/--view2`` a synthetic lca0 pair (``sdfcar.synthetic.xa``, 512^2, 12-bit LIN, 24
frames) is written to a temporary folder first.

    python benchmarks/xa_workflow_figure.py [--view1 A.dcm --view2 B.dcm] [--set KEY=VALUE]
        [--out docs/figures/xa_workflow.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sdfcar, not an installed one

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from sdfcar.apps.cli import main as sdfcar  # noqa: E402
from sdfcar.geometry import ViewGeometry  # noqa: E402
from sdfcar.io.images import read_view  # noqa: E402
from sdfcar.xa import read_xa  # noqa: E402


def synthetic_pair(folder: Path) -> tuple[Path, Path]:
    """A synthetic lca0 XA pair written into ``folder``."""
    from sdfcar.synthetic.xa import phantom_pair, write_pair

    _, _, runs = phantom_pair("lca", 0, 512, supersample=2)
    return write_pair(folder, runs)


def draw(out_dir: Path, files: tuple[Path, Path], path: Path) -> Path:
    """The three-panel figure of reconstruction folder ``out_dir`` (made from ``files``)."""
    record = json.loads((out_dir / "run.json").read_text())
    views = [ViewGeometry.from_dict(view) for view in record["geometry_used"]["views"]]
    runs = record["inputs"]["xa"]["views"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for index, (axis, file) in enumerate(zip(axes[:2], files)):
        number = int(runs[index]["frame"]["number"])
        mask = read_view(out_dir / "views" / f"view{index + 1}" / "mask.nii.gz")
        axis.imshow(read_xa(file).pixels[number - 1], cmap="gray")
        axis.contour(mask > 0, levels=[0.5], colors="red", linewidths=0.6)
        axis.set_title(f"view {index + 1}: {file.name}, frame {number} (primary "
                       f"{views[index].primary_angle_deg:+.0f}, secondary "
                       f"{views[index].secondary_angle_deg:+.0f} deg)\n"
                       "vessel mask outlined in red", fontsize=9)
        axis.axis("off")
    vessels = next(section["centrelines"] for section in record["statistics"].values()
                   if isinstance(section, dict) and "centrelines" in section)
    view = views[0]
    segments, radii = [], []
    for vessel in vessels:
        projected = view.project_points(np.asarray(vessel["points"]))[:, ::-1]  # (col, row)
        segments += list(np.stack([projected[:-1], projected[1:]], axis=1))
        radii += list(np.asarray(vessel["radii"])[1:])
    lines = LineCollection(segments, array=np.asarray(radii), cmap="viridis",
                           linewidths=1.0 + 2.0 * np.asarray(radii))
    axes[2].add_collection(lines)
    axes[2].set_xlim(0, view.detector_shape[1])
    axes[2].set_ylim(view.detector_shape[0], 0)
    axes[2].set_aspect("equal")
    axes[2].set_facecolor("black")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title(f"3D result: {len(vessels)} centrelines ({record['preset']}), seen along "
                      "view 1's beam", fontsize=9)
    figure.colorbar(lines, ax=axes[2], fraction=0.046, label="radius (mm)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view1", type=Path)
    parser.add_argument("--view2", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "xa_workflow.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        files = (args.view1, args.view2) if args.view1 else synthetic_pair(scratch / "xa")
        out_dir = scratch / "reconstruction"
        command = ["reconstruct", "--view1", str(files[0]), "--view2", str(files[1]),
                   "--out", str(out_dir), "--device", "cpu", "--progress", "none"]
        for item in args.set:
            command += ["--set", item]
        if sdfcar(command) != 0:
            raise SystemExit("the reconstruction failed (see above)")
        print(f"wrote {draw(out_dir, files, args.out)}")


if __name__ == "__main__":
    main()
