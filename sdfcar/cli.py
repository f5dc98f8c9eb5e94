"""The ``sdfcar`` command line.

Every command validates its input first; bad input prints one line naming the file, field
or option and exits with status 2, and outputs are written atomically (nothing partial).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_directory, check_target
from .case import write_case
from .device import DEVICE_CHOICES, resolve_device
from .errors import InputError
from .geometry import CaseGeometry, ViewGeometry, VolumeGrid
from .images import read_volume, write_volume
from .simulate import DEFAULT_MASK_THRESHOLD_MM, NoiseModel, simulate_case

EXIT_BAD_INPUT = 2

#: The reference clinical geometry (DESIGN.md): the seed's two views.
REFERENCE_VIEWS = (
    ViewGeometry(29.7, 0.1, 993.0, 757.06, (512, 512), (0.278, 0.278)),
    ViewGeometry(2.0, 29.0, 1055.0, 756.99, (512, 512), (0.278, 0.278)),
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _noise(text: str) -> NoiseModel:
    try:
        return NoiseModel.parse(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--noise: ")) from None


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 128],
                        metavar=("NI", "NJ", "NK"), help="voxels per axis (default 128^3)")
    parser.add_argument("--spacing", type=float, default=0.8, metavar="MM",
                        help="isotropic voxel size in mm (default 0.8)")
    parser.add_argument("--center", type=float, nargs=3, default=[0.0, 0.0, 0.0],
                        metavar=("X", "Y", "Z"), help="LPS centre of the grid in mm")


def _grid_from(args: argparse.Namespace) -> VolumeGrid:
    try:
        return VolumeGrid(tuple(args.shape), (args.spacing,) * 3, tuple(args.center))
    except InputError as error:
        raise InputError(str(error).replace("volume.shape", "--shape")
                         .replace("volume.spacing_mm", "--spacing")) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands."""
    parser = _Parser(prog="sdfcar", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sdfcar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    phantom = commands.add_parser("phantom", help="write a synthetic coronary tree label volume")
    phantom.add_argument("--kind", choices=("lca", "rca"), default="lca")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--out", required=True, type=Path, help="output label (.nii.gz, .nrrd)")
    phantom.add_argument("--overwrite", action="store_true")
    _grid_arguments(phantom)
    phantom.set_defaults(run=run_phantom)

    simulate = commands.add_parser("simulate", help="project a label volume into a case folder")
    simulate.add_argument("--label", required=True, type=Path, help="ground-truth label volume")
    simulate.add_argument("--geometry", required=True, type=Path, help="geometry.json")
    simulate.add_argument("--out", required=True, type=Path, help="case folder to create")
    simulate.add_argument("--noise", type=_noise, default=None,
                          metavar="gaussian:S|poisson:I0",
                          help="Gaussian (S x view max) or Poisson (I0 photons/pixel) noise")
    simulate.add_argument("--mask", action="store_true",
                          help="write binary silhouettes instead of line integrals")
    simulate.add_argument("--mask-threshold", type=float, default=DEFAULT_MASK_THRESHOLD_MM,
                          metavar="MM", help="integral above which a pixel is vessel (--mask)")
    simulate.add_argument("--seed", type=int, default=0, help="noise seed")
    simulate.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES}")
    simulate.add_argument("--overwrite", action="store_true")
    simulate.set_defaults(run=run_simulate)

    demo = commands.add_parser("demo", help="phantom -> simulated two-view case, in one go")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--kind", choices=("lca", "rca"), default="lca")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES}")
    demo.add_argument("--overwrite", action="store_true")
    demo.set_defaults(run=run_demo)
    return parser


def run_phantom(args: argparse.Namespace) -> None:
    """``sdfcar phantom``: rasterise a seeded coronary tree into a label volume."""
    from .phantom import label_volume

    grid = _grid_from(args)
    check_target(args.out, args.overwrite)
    label = label_volume(args.kind, args.seed, grid)
    write_volume(args.out, label, grid, overwrite=args.overwrite)
    print(f"wrote {args.out} ({args.kind}, seed {args.seed}, {int(label.sum())} vessel voxels)")


def run_simulate(args: argparse.Namespace) -> None:
    """``sdfcar simulate``: line integrals (or silhouettes) of a label in its own space."""
    geometry = CaseGeometry.load(args.geometry)
    check_target(args.out, args.overwrite)
    device = resolve_device(args.device)
    label, label_grid = read_volume(args.label)
    case = simulate_case(label, label_grid, geometry, noise=args.noise, seed=args.seed,
                         mask_threshold_mm=args.mask_threshold if args.mask else None,
                         device=device)
    write_case(args.out, case, overwrite=args.overwrite)
    peaks = ", ".join(f"{image.max():.2f}" for image in case.views)
    print(f"wrote {args.out} (views {len(case.views)}, peak values {peaks})")


def run_demo(args: argparse.Namespace) -> None:
    """``sdfcar demo``: a phantom and its simulated two-view case at the reference geometry."""
    from .phantom import label_volume

    check_target(args.out, args.overwrite)
    device = resolve_device(args.device)
    geometry = CaseGeometry(REFERENCE_VIEWS)
    label = label_volume(args.kind, args.seed, geometry.volume)
    case = simulate_case(label, geometry.volume, geometry, device=device)
    with atomic_directory(args.out, args.overwrite) as staging:
        write_volume(staging / "gt.nii.gz", label, geometry.volume)
        write_case(staging / "case", case)
    print(f"ground truth : {args.out / 'gt.nii.gz'} ({int(label.sum())} vessel voxels)")
    print(f"case         : {args.out / 'case'} (geometry.json, view1.nii.gz, view2.nii.gz)")
    for index, image in enumerate(case.views, start=1):
        print(f"view {index}       : {image.shape[0]}x{image.shape[1]}, "
              f"max line integral {image.max():.2f} mm, {np.mean(image > 0) * 100:.1f} % pixels")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdfcar`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"sdfcar {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"sdfcar {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
