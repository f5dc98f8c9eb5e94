"""The ``sdfcar`` command line.

Every command validates its input first; bad input prints one line naming the file, field
or option and exits with status 2, and outputs are written atomically (nothing partial).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path


from sdfcar import __version__
from sdfcar.config import DEFAULT_PRESET, MASK_PRESET, PRESETS, TARGETS, ConfigRequest
from sdfcar.device import DEVICE_CHOICES, resolve_device
from sdfcar.errors import EXIT_BAD_INPUT, InputError, error_line
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, VolumeGrid
from sdfcar.io.atomic import atomic_directory, check_target
from sdfcar.io.case import write_case
from sdfcar.io.images import read_view, read_volume, write_volume
from sdfcar.io.limits import check_memory
from sdfcar.metrics import evaluate
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM
from sdfcar.progress import MODES as PROGRESS_MODES
from sdfcar.progress import reporter
from sdfcar.synthetic.simulate import DEFAULT_MASK_THRESHOLD_MM, NoiseModel, simulate_case
from sdfcar.xa.vessels import (DEFAULT_PIXEL_MM, attenuation_from_intensity, extract_vessels,
                               write_extraction)


#: ``sdfcar demo`` simulates its views from the phantom voxelised this many times finer
#: than the reconstruction grid.
DEMO_SUPERSAMPLE = 2


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


def _reconstruction_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} "
                        f"(default: {DEFAULT_PRESET}; {MASK_PRESET} for a case of binary "
                        "silhouettes)")
    parser.add_argument("--device", default=None, help=f"one of {DEVICE_CHOICES} (default auto)")
    parser.add_argument("--seed", type=int, default=None, help="optimisation seed (default 0)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations of the preset's method (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override any preset setting, e.g. "
                        "--set field.network.levels=8 --set field.loss.eikonal=0.1 "
                        "(repeatable)")


def _output_spacing_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-spacing", type=float, default=None, metavar="MM",
                        help="write label, SDF, occupancy and mesh on a finer grid of this "
                        "spacing (the grid's divided by a whole number, e.g. 0.4 for 0.8): "
                        "the sdf-tree model is evaluated there, other methods' occupancy is "
                        "interpolated (same as --set output_spacing_mm=MM)")


def _progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                        help="progress on stderr: a bar on a terminal and a line every 10 %% "
                        "otherwise (auto), either of those (bar, percent), machine-readable "
                        "'PROGRESS done total unit loss stage' lines for GUIs (lines), or none")


def _request(args: argparse.Namespace, **settings) -> ConfigRequest:
    return ConfigRequest.of(args.preset, args.overrides, args.iterations, seed=args.seed,
                            device=args.device, **settings)


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

    reconstruct = commands.add_parser(
        "reconstruct", help="reconstruct the 3D vessel tree of a case folder or of two XA "
        "DICOM runs")
    reconstruct.add_argument("case_dir", type=Path, nargs="?", default=None,
                             help="folder with geometry.json, view1.*, view2.* (or give "
                             "--view1 and --view2)")
    reconstruct.add_argument("--out", required=True, type=Path, help="output folder to create")
    _reconstruction_arguments(reconstruct)
    reconstruct.add_argument("--target", choices=TARGETS, default=None,
                             help="what is fitted: line integrals (MSE), binary masks "
                             "(silhouette BCE), or auto: mask when the views hold only 0 "
                             "and 1 (default: the preset's, auto)")
    xa = reconstruct.add_argument_group(
        "DICOM XA input", "two X-ray angiography runs instead of CASE_DIR; geometry from "
        "their tags, one frame of each, vessel masks extracted or given")
    xa.add_argument("--view1", type=Path, metavar="A.dcm", help="first XA run")
    xa.add_argument("--view2", type=Path, metavar="B.dcm", help="second XA run")
    xa.add_argument("--geometry", type=Path, default=None, metavar="JSON",
                    help="contract fields replacing or filling the geometry tags: shared at "
                    'the top level, per view in "views": [{...}, {...}], and the '
                    '"volume" grid')
    xa.add_argument("--frame", type=int, nargs="+", default=None, metavar="N",
                    help="1-based frame: one number for both runs or two (view1 view2) "
                    "(default: chosen automatically, end-diastole with the most contrast)")
    xa.add_argument("--mask1", type=Path, default=None, metavar="IMAGE",
                    help="vessel mask of view 1 (nonzero = vessel, the frame's rows x "
                    "columns; PNG, NRRD, NIfTI, ...) instead of the extracted one")
    xa.add_argument("--mask2", type=Path, default=None, metavar="IMAGE",
                    help="vessel mask of view 2")
    xa.add_argument("--mu", type=float, default=None, metavar="PER_MM",
                    help="attenuation of contrast-filled blood per mm that scales the "
                    f"line-integral proxies (default {CONTRAST_MU_PER_MM} for linear pixel "
                    "data; for LOG/DISP data, scaled to the vessels' widths)")
    reconstruct.add_argument("--overwrite", action="store_true")
    _progress_argument(reconstruct)
    _output_spacing_argument(reconstruct)
    reconstruct.add_argument("--quiet", action="store_true", help="same as --progress none")
    reconstruct.set_defaults(run=run_reconstruct)

    evaluate_parser = commands.add_parser("evaluate", help="score a label against ground truth")
    evaluate_parser.add_argument("--pred", required=True, type=Path,
                                 help="predicted label volume, or a reconstruction folder")
    evaluate_parser.add_argument("--gt", required=True, type=Path, help="ground-truth label")
    evaluate_parser.add_argument(
        "--centerlines", type=Path, default=None, metavar="FILE",
        help="ground-truth centrelines with radii (JSON: {\"vessels\": [{\"points\": "
             "[[x, y, z], ...] LPS mm, \"radii\": [mm, ...]}]}); default: the skeleton of "
             "--gt")
    evaluate_parser.add_argument("--json", action="store_true", help="print JSON")
    evaluate_parser.set_defaults(run=run_evaluate)

    demo = commands.add_parser(
        "demo", help="phantom -> simulated views -> reconstruction -> scores, in one go")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--kind", choices=("lca", "rca"), default="lca")
    demo.add_argument("--phantom-seed", type=int, default=0)
    _reconstruction_arguments(demo)
    _progress_argument(demo)
    demo.add_argument("--overwrite", action="store_true")
    demo.set_defaults(run=run_demo)

    extract = commands.add_parser(
        "extract-vessels", help="vessel mask and line-integral proxy of one angiogram")
    extract.add_argument("image", type=Path, help="XA DICOM file, or a 2D image (PNG, TIFF, "
                         "NIfTI, ...) of linear X-ray intensities (vessels dark)")
    extract.add_argument("--out", required=True, type=Path, help="output folder to create")
    extract.add_argument("--frame", type=int, default=None, metavar="N",
                         help="frame of a cine run, 1-based (default: chosen automatically)")
    extract.add_argument("--mask", type=Path, default=None, help="vessel mask image (nonzero = "
                         "vessel, same rows x columns) to use instead of the automatic one")
    extract.add_argument("--geometry", type=Path, default=None, metavar="JSON",
                         help="contract view fields that replace or fill DICOM geometry tags, "
                         'e.g. {"source_to_isocenter_mm": 760}')
    extract.add_argument("--mu", type=float, default=None, metavar="PER_MM",
                         help="attenuation of contrast-filled blood per mm used to convert "
                         f"-log intensity to mm (default {CONTRAST_MU_PER_MM} for linear "
                         "pixel data; for LOG/DISP DICOM data, scaled to the vessels' widths)")
    extract.add_argument("--pixel-mm", type=float, default=None, metavar="MM",
                         help="pixel size at the isocenter of a plain image (default "
                         f"{DEFAULT_PIXEL_MM}; DICOM files take it from their geometry)")
    extract.add_argument("--overwrite", action="store_true")
    extract.set_defaults(run=run_extract_vessels)

    xa_geometry = commands.add_parser(
        "xa-geometry", help="print the C-arm geometry of one frame of an XA DICOM file as JSON")
    xa_geometry.add_argument("image", type=Path, help="XA DICOM file")
    xa_geometry.add_argument("--frame", type=int, default=1, metavar="N",
                             help="frame of a cine run, 1-based (default 1)")
    xa_geometry.add_argument("--geometry", type=Path, default=None, metavar="JSON",
                             help="contract view fields that replace or fill geometry tags")
    xa_geometry.set_defaults(run=run_xa_geometry)

    batch = commands.add_parser(
        "batch", help="reconstruct every case of a manifest on Ray (this machine or a cluster)")
    batch.add_argument("manifest", type=Path, help="CSV with header case,case_dir[,gt] (or "
                       "case,view1,view2[,gt]), or a JSON list of objects with those keys")
    batch.add_argument("--out", required=True, type=Path,
                       help="output folder: OUT/<case>/ per case and the log OUT/batch.jsonl")
    batch.add_argument("--address", default=None, help="Ray cluster to attach to (default: "
                       "RAY_ADDRESS, else a Ray instance started on this machine)")
    batch.add_argument("--num-cpus", type=int, default=None, metavar="N",
                       help="CPUs of the Ray instance started here (default: all)")
    batch.add_argument("--cpus-per-case", type=float, default=1.0, metavar="N",
                       help="CPUs each case asks Ray for (default 1)")
    batch.add_argument("--gpus-per-case", type=float, default=0.0, metavar="F",
                       help="GPUs each case asks Ray for; fractions share a GPU (0.25: four "
                       "cases per GPU; default 0: CPU)")
    batch.add_argument("--retries", type=int, default=2, metavar="N",
                       help="retries of a case whose worker or node crashed or ran out of "
                       "memory (default 2); bad input is never retried")
    _reconstruction_arguments(batch)
    _output_spacing_argument(batch)
    again = batch.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="skip the cases OUT/batch.jsonl records as ok, run the others")
    again.add_argument("--overwrite", action="store_true",
                       help="redo every case and start a new OUT/batch.jsonl")
    batch.add_argument("--progress", choices=("bar", "none"), default="bar",
                       help="progress bar on stderr (cases done, failed, ETA) or none")
    batch.set_defaults(run=run_batch_command)

    qca = commands.add_parser(
        "qca", help="print the QCA table, bifurcation angles and best working views of a "
        "reconstruction folder (methods with centrelines: tubes, sdf-tree)")
    qca.add_argument("recon_dir", type=Path, help="output folder of sdfcar reconstruct")
    qca.add_argument("--vessel", default=None, metavar="NAME",
                     help="vessel whose working views are searched, e.g. 'branch 2' "
                     "(default: the most stenosed lesion, else vessel 1)")
    qca.set_defaults(run=run_qca)
    return parser


def run_phantom(args: argparse.Namespace) -> None:
    """``sdfcar phantom``: rasterise a seeded coronary tree into a label volume."""
    from sdfcar.synthetic.phantom import label_volume

    grid = _grid_from(args)
    check_target(args.out, args.overwrite)
    label = label_volume(args.kind, args.seed, grid)
    write_volume(args.out, label, grid, overwrite=args.overwrite)
    print(f"wrote {args.out} ({args.kind}, seed {args.seed}, {int(label.sum())} vessel voxels)")


def run_simulate(args: argparse.Namespace) -> None:
    """``sdfcar simulate``: line integrals (or silhouettes) of a label in its own space."""
    geometry = CaseGeometry.load(args.geometry)
    check_target(args.out, args.overwrite, (args.label, args.geometry), folder=True)
    device = resolve_device(args.device)
    label, label_grid = read_volume(args.label)
    check_memory(replace(geometry, volume=label_grid), str(args.geometry), dense=True)
    case = simulate_case(label, label_grid, geometry, noise=args.noise, seed=args.seed,
                         mask_threshold_mm=args.mask_threshold if args.mask else None,
                         device=device)
    write_case(args.out, case, overwrite=args.overwrite)
    peaks = ", ".join(f"{image.max():.2f}" for image in case.views)
    print(f"wrote {args.out} (views {len(case.views)}, peak values {peaks})")


def run_reconstruct(args: argparse.Namespace) -> None:
    """``sdfcar reconstruct``: reconstruct a case folder or two XA runs, write every output."""
    from sdfcar.io.outputs import write_outputs
    from sdfcar.pipeline.inputs import from_case_dir
    from sdfcar.pipeline.run import run

    started = time.perf_counter()
    xa_input = _xa_input(args)
    request = _request(args, target=args.target, output_spacing_mm=args.output_spacing)
    # An XA pair's default does not depend on its runs: bad settings fail before the 2D step.
    config = request.build(DEFAULT_PRESET) if xa_input else None
    check_target(args.out, args.overwrite, (args.case_dir, args.view1, args.view2, args.mask1,
                                            args.mask2, args.geometry), folder=True)
    inputs = _prepare_pair(args) if xa_input else from_case_dir(args.case_dir)
    config = config or request.build(inputs.default_preset)
    result = run(inputs, config, reporter("none" if args.quiet else args.progress))
    write_outputs(args.out, result, args.overwrite, started=started)
    print(f"wrote {args.out} ({result.record.vessel_voxels} vessel voxels, "
          f"{result.record.components} component(s), {time.perf_counter() - started:.1f} s)")


def _xa_input(args: argparse.Namespace) -> bool:
    """Whether ``reconstruct`` reads two XA runs; checks the inputs are one way or the other."""
    xa_only = {"--geometry": args.geometry, "--frame": args.frame, "--mask1": args.mask1,
               "--mask2": args.mask2, "--mu": args.mu}
    if args.case_dir is not None:
        if args.view1 is not None or args.view2 is not None:
            raise InputError("reconstruct: give either CASE_DIR or --view1 and --view2, "
                             "not both")
        for option, value in xa_only.items():
            if value is not None:
                raise InputError(f"{option}: only with --view1 and --view2 (DICOM XA input)")
        return False
    if args.view1 is None or args.view2 is None:
        raise InputError("reconstruct: give a CASE_DIR, or both --view1 and --view2")
    if args.frame is not None and len(args.frame) > 2:
        raise InputError(f"--frame: expected one frame number or two (view1 view2), got "
                         f"{len(args.frame)}")
    return True


def _prepare_pair(args: argparse.Namespace):
    """The two XA runs of ``reconstruct`` as pipeline inputs: frames, masks, proxies and
    report; prints the frames chosen and logs the warnings."""
    from sdfcar.pipeline.inputs import from_xa_pair
    from sdfcar.xa import load_geometry_overrides

    overrides = load_geometry_overrides(args.geometry) if args.geometry else None
    frame = None if args.frame is None else (args.frame[0] if len(args.frame) == 1
                                             else tuple(args.frame))
    inputs = from_xa_pair(args.view1, args.view2, frame, overrides,
                          masks=(args.mask1, args.mask2), mu_per_mm=args.mu)
    print(f"frames: {inputs.pair.frames_line()}", flush=True)
    for note in inputs.pair.warnings():
        logging.warning(note)
    return inputs


def _label_of(path: Path) -> Path:
    return path / "label.nii.gz" if path.is_dir() else path


def run_evaluate(args: argparse.Namespace) -> None:
    """``sdfcar evaluate``: metrics of a predicted label against ground truth."""
    from sdfcar.centerlines import load as load_centerlines

    centerlines = load_centerlines(args.centerlines) if args.centerlines else None
    pred, pred_grid = read_volume(_label_of(args.pred))
    gt, gt_grid = read_volume(args.gt)
    scores = evaluate(pred > 0, gt > 0, pred_grid, gt_grid, centerlines)
    print(json.dumps(scores, indent=2) if args.json else format_scores(scores))


def format_scores(scores: dict) -> str:
    """A two-column table of metric names and values."""
    return "\n".join(f"{name:<18} {value:.4f}" if isinstance(value, float)
                     else f"{name:<18} {value}" for name, value in scores.items())


def run_demo(args: argparse.Namespace) -> None:
    """``sdfcar demo``: phantom, simulated views, reconstruction and scores in one folder."""
    from sdfcar.io.outputs import write_outputs
    from sdfcar.pipeline.inputs import from_arrays
    from sdfcar.pipeline.run import run
    from sdfcar.synthetic.phantom import label_volume

    started = time.perf_counter()
    config = _request(args).build(DEFAULT_PRESET)
    check_target(args.out, args.overwrite, folder=True)
    geometry = CaseGeometry(REFERENCE_VIEWS)
    label = label_volume(args.kind, args.phantom_seed, geometry.volume)
    # Views from the tree voxelised twice as finely as the reconstruction grid: projecting
    # the 0.8 mm label itself would be an inverse crime (the data a binary label reproduces).
    fine = geometry.volume.refined(DEMO_SUPERSAMPLE)
    case = simulate_case(label_volume(args.kind, args.phantom_seed, fine), fine, geometry,
                         device=resolve_device(config.device))
    result = run(from_arrays(case.views, case.geometry), config, reporter(args.progress))
    scores = evaluate(result.label > 0, label > 0, result.grid, geometry.volume)
    with atomic_directory(args.out, args.overwrite) as staging:
        write_volume(staging / "gt.nii.gz", label, geometry.volume)
        write_case(staging / "case", case)
        write_outputs(staging / "reconstruction", result, extra={"scores": scores},
                      started=started)
    seconds = result.record.seconds
    print(f"ground truth   : {args.out / 'gt.nii.gz'} ({args.kind}, seed {args.phantom_seed})")
    print(f"simulated case : {args.out / 'case'} (views projected from the phantom voxelised "
          f"at {fine.spacing_mm[0]:g} mm, {DEMO_SUPERSAMPLE}x finer than the "
          f"{geometry.volume.spacing_mm[0]:g} mm reconstruction grid)")
    print(f"reconstruction : {args.out / 'reconstruction'} (label, sdf, occupancy, "
          "segmentation.seg.nrrd, mesh.vtk, report.png, run.json)")
    print(f"time           : {time.perf_counter() - started:.1f} s ({config.preset}: "
          + ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items()
                      if stage != "reconstruct") + ")")
    print(format_scores(scores))


def run_batch_command(args: argparse.Namespace) -> int:
    """``sdfcar batch``: every case of a manifest as a Ray task; prints a summary table and
    returns 1 when a case failed (its error is in OUT/batch.jsonl)."""
    from sdfcar.apps.batch import run_batch

    request = _request(args, output_spacing_mm=args.output_spacing)
    summary = run_batch(args.manifest, args.out, request, address=args.address,
                        num_cpus=args.num_cpus, cpus_per_case=args.cpus_per_case,
                        gpus_per_case=args.gpus_per_case, retries=args.retries,
                        resume=args.resume, overwrite=args.overwrite,
                        progress=args.progress == "bar")
    print(summary.table())
    return 1 if summary.failed else 0


def run_extract_vessels(args: argparse.Namespace) -> None:
    """``sdfcar extract-vessels``: vessel mask and line-integral proxy of one angiogram (a
    frame of an XA DICOM run, or a plain image), with previews and a JSON report."""
    from sdfcar.xa import is_dicom, load_view_overrides, prepare_xa_view, read_mask

    check_target(args.out, args.overwrite, (args.image, args.mask, args.geometry), folder=True)
    if is_dicom(args.image) or args.image.suffix.lower() == ".dcm":
        if args.pixel_mm is not None:
            raise InputError("--pixel-mm: only for plain images (a DICOM file's geometry "
                             "gives the pixel size)")
        overrides = load_view_overrides(args.geometry) if args.geometry else None
        prepared = prepare_xa_view(args.image, args.frame, overrides, args.mask, args.mu)
        extraction, report = prepared.extraction, prepared.report
        attenuation = prepared.run.attenuation(prepared.choice.number)
        spacing = prepared.view.detector_spacing_mm
        chosen = f"frame {prepared.choice.number} ({prepared.choice.rule})"
    else:
        for option, value in (("--geometry", args.geometry), ("--frame", args.frame)):
            if value is not None:
                raise InputError(f"{option}: only for DICOM files ({args.image} is a plain "
                                 "image)")
        pixel_mm = DEFAULT_PIXEL_MM if args.pixel_mm is None else args.pixel_mm
        attenuation = attenuation_from_intensity(read_view(args.image), str(args.image))
        mask = None if args.mask is None else read_mask(args.mask, attenuation.shape)
        mu = CONTRAST_MU_PER_MM if args.mu is None else args.mu
        extraction = extract_vessels(attenuation, pixel_mm, mu, mask)
        report = {"file": str(args.image), "extraction": extraction.info, "warnings": []}
        spacing = (pixel_mm, pixel_mm)
        chosen = "single image"
    if args.mask is not None:
        extraction.info["mask_file"] = str(args.mask)
    write_extraction(args.out, extraction, attenuation, spacing, report, args.overwrite)
    for note in report["warnings"]:
        logging.warning(note)
    print(f"wrote {args.out} ({chosen}, {extraction.info['vessel_pixels']} vessel pixels "
          f"({extraction.info['mask_source']} mask), integral up to "
          f"{extraction.info['integral_max_mm']:.1f} mm)")


def run_xa_geometry(args: argparse.Namespace) -> None:
    """``sdfcar xa-geometry``: the geometry ``reconstruct --view1 --view2`` reads from an XA
    file (tags, per-frame angles, overrides), as JSON on stdout: ``file``, ``frames``,
    ``frame``, ``view`` (``geometry.json`` view fields), ``detector_spacing_source`` (see
    :mod:`sdfcar.xa.spacing`) and ``warnings``."""
    from sdfcar.xa import load_view_overrides, read_xa

    overrides = load_view_overrides(args.geometry) if args.geometry else None
    run = read_xa(args.image, overrides)
    print(json.dumps({"file": str(args.image), "frames": run.number_of_frames,
                      "frame": args.frame, "view": run.view(args.frame).to_dict(),
                      "detector_spacing_source": run.spacing_source(args.frame),
                      "warnings": list(run.warnings)}, indent=2))


def run_qca(args: argparse.Namespace) -> None:
    """``sdfcar qca``: the QCA of a reconstruction folder's ``run.json``, as text."""
    from sdfcar.analysis.summary import format_report, load_folder

    print(format_report(load_folder(args.recon_dir, args.vessel)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdfcar`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="sdfcar: %(message)s")
    try:
        status = args.run(args)
    except InputError as error:
        print(error_line(args.command, str(error)), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"sdfcar {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
