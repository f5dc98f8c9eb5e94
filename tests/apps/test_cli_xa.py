"""`sdfcar reconstruct --view1/--view2`: XA DICOM runs end to end, masks as silhouettes,
the silhouette (mask) target mode and its loss, and bad input."""

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from sdfcar.io.case import write_case
from sdfcar.apps.cli import main
from sdfcar.config import build_config
from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid
from sdfcar.io.images import read_view, read_volume
from sdfcar.methods.losses import silhouette_bce
from sdfcar.metrics import evaluate
from sdfcar.pipeline.problem import resolve_target
from sdfcar.pipeline.run import reconstruct
from sdfcar.synthetic.simulate import project_label, simulate_case
from sdfcar.methods.voxel import silhouette_gradient
from sdfcar.synthetic.xa import save_dataset

from conftest import SMALL_GEOMETRY, SMALL_GRID, SMALL_VIEWS, arc_label, xa_pair

FAST = ["--device", "cpu", "--quiet", "--preset", "field", "--iterations", "60", "--set",
        "voxel.iterations=400"]


@pytest.fixture(scope="module")
def xa12(tmp_path_factory, arc_case):
    return xa_pair(tmp_path_factory.mktemp("xa12"), arc_case, 12)


@pytest.fixture(scope="module")
def xa8(tmp_path_factory, arc_case):
    return xa_pair(tmp_path_factory.mktemp("xa8"), arc_case, 8)


def _scores(out, label):
    pred, pred_grid = read_volume(out / "label.nii.gz")
    return evaluate(pred > 0, label > 0, pred_grid, SMALL_GRID)


@pytest.mark.slow
def test_xa_pair_reconstructs_with_frames_geometry_and_views_saved(xa12, arc_case, tmp_path,
                                                                    capsys):
    label = arc_case[0]
    runs, (view1, view2), overrides = xa12
    out = tmp_path / "out"
    assert main(["reconstruct", "--view1", str(view1), "--view2", str(view2), "--out",
                 str(out), "--geometry", str(overrides), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "frames: view1: frame " in printed and "view2: frame " in printed
    run = json.loads((out / "run.json").read_text())
    xa = run["inputs"]["xa"]
    frames = [view["frame"]["number"] for view in xa["views"]]
    # Automatic choice: an end-diastolic (R-wave) frame of each run.
    assert all(f in r.r_wave_frames for f, r in zip(frames, runs))
    assert all(f"frame {f} of 6" in printed for f in frames)
    for view, expected in zip(xa["views"], SMALL_VIEWS):
        assert view["geometry"]["primary_angle_deg"] == pytest.approx(expected.primary_angle_deg)
        assert view["geometry"]["source_to_detector_mm"] == pytest.approx(
            expected.source_to_detector_mm)
        assert view["extraction"]["mask_source"] == "extracted"
    assert xa["volume"]["shape"] == [48, 48, 48]
    assert run["target"] == "integral" and run["silhouettes"] == "given"
    assert run["inputs"]["views"] == {"view1": str(view1), "view2": str(view2)}
    for index in (1, 2):
        mask = read_view(out / "views" / f"view{index}" / "mask.nii.gz")
        assert mask.shape == (96, 96) and mask.any() and (out / "views" / f"view{index}" / "integral.nii.gz").is_file()
        assert (out / "views" / f"view{index}" / "overlay.png").is_file()
    # Measured at 60 iterations: Dice 0.52 from the XA files against 0.58 from the true
    # integrals (full preset on the integrals: 0.94). 0.3 separates a working pipeline from
    # a wrong geometry, frame or sign (Dice < 0.05).
    scores = _scores(out, label)
    assert scores["dice"] > 0.3, scores
    assert run["components"] == 1


@pytest.mark.slow
def test_xa_pair_uses_the_sdf_tree_preset_by_default(xa12, arc_case, tmp_path):
    label = arc_case[0]
    _, (view1, view2), overrides = xa12
    out = tmp_path / "out"
    small = ["tree.tracing.trees=2", "tree.rounds=0"]
    assert main(["reconstruct", "--view1", str(view1), "--view2", str(view2), "--out",
                 str(out), "--geometry", str(overrides), "--device", "cpu", "--quiet",
                 *[arg for item in small for arg in ("--set", item)]]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["preset"] == "sdf-tree" and run["method"] == "tree"
    assert run["statistics"]["tree"]["vessels"] >= 1
    assert run["components"] == 1
    # The XA path finds the tree the same preset finds from line integrals: the whole arc
    # and nothing else. Measured 2026-12-04: XA Dice 0.84 (662 voxels, median radius
    # 1.89 mm, chamfer 0.18 mm) against 0.97 (719 voxels) from the integrals of the arc
    # voxelised at 0.5 mm (no inverse crime; the XA runs themselves come from the 1 mm
    # label's integrals, the shared fixture). The gap is the XA proxy's boundary (radii 5 %
    # small), not the topology; it is open.
    xa = _scores(out, label)
    assert xa["tprec"] > 0.95 and xa["tsens"] > 0.95 and xa["chamfer_mm"] < 0.5, xa
    assert xa["dice"] > 0.8, xa
    fine = SMALL_GRID.refined(2)
    simulated = reconstruct(project_label(arc_label(fine), fine, SMALL_VIEWS), SMALL_GEOMETRY,
                            build_config("sdf-tree", small, device="cpu"))
    simulated_dice = evaluate(simulated.label > 0, label > 0, SMALL_GRID, SMALL_GRID)["dice"]
    assert simulated_dice > 0.95, simulated_dice


@pytest.mark.slow
def test_8bit_log_pair_with_user_masks_and_mask_target(xa8, arc_case, tmp_path):
    label = arc_case[0]
    runs, (view1, view2), overrides = xa8
    frames = runs[0].r_wave_frames[0], runs[1].r_wave_frames[0]
    mask_paths = []
    for index, (run, frame) in enumerate(zip(runs, frames), start=1):
        # The true silhouette of the frame, as a segmentation tool would export it (PNG).
        mask = (run.integrals[frame - 1] > 0.25).astype(np.uint8) * 255
        mask_paths.append(tmp_path / f"mask{index}.png")
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(mask_paths[-1]))
    out = tmp_path / "out"
    assert main(["reconstruct", "--view1", str(view1), "--view2", str(view2), "--out",
                 str(out), "--geometry", str(overrides), "--frame", str(frames[0]),
                 str(frames[1]), "--mask1", str(mask_paths[0]), "--mask2",
                 str(mask_paths[1]), "--target", "mask", *FAST]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["target"] == "mask" and run["config"]["target"] == "mask"
    for view, frame, path in zip(run["inputs"]["xa"]["views"], frames, mask_paths):
        assert view["frame"]["number"] == frame and view["frame"]["rule"] == "given"
        assert view["extraction"]["mask_source"] == "user"
        assert view["extraction"]["mask_file"] == str(path)
        assert view["intensity"] == {"relationship": "LOG", "sign": 1, "bits_stored": 8}
    saved = read_view(out / "views" / "view1" / "mask.nii.gz")
    assert np.array_equal(saved > 0, runs[0].integrals[frames[0] - 1] > 0.25)
    # Silhouettes alone leave more two-view ambiguity than integrals (extracted masks:
    # measured Dice 0.37 at 60 iterations); 0.2 still rules out a broken pipeline.
    assert _scores(out, label)["dice"] > 0.2


def test_mask_target_is_auto_for_binary_views_and_beats_integral_fit_of_them(arc_case):
    label, _ = arc_case
    binary = simulate_case(label, SMALL_GRID, SMALL_GEOMETRY, mask_threshold_mm=0.25).views
    assert resolve_target("auto", binary) == "mask"
    assert resolve_target("auto", arc_case[1]) == "integral"
    settings = {"iterations": 60, "device": "cpu"}
    as_mask = reconstruct(binary, SMALL_GEOMETRY, build_config(
        "field", ["voxel.iterations=400"], **settings))
    as_integral = reconstruct(binary, SMALL_GEOMETRY, build_config(
        "field", ["voxel.iterations=400", "target=integral"], **settings))
    assert as_mask.record.target == "mask" and as_integral.record.target == "integral"
    mask_dice = evaluate(as_mask.label > 0, label > 0, SMALL_GRID, SMALL_GRID)["dice"]
    integral_dice = evaluate(as_integral.label > 0, label > 0, SMALL_GRID, SMALL_GRID)["dice"]
    # A 0/1 view read as 1 mm line integrals asks for a quarter of the tube's mass (its
    # 4 mm chords): measured Dice 0.02 there against 0.5 for the silhouette fit (full preset).
    assert mask_dice > 0.3 and mask_dice > integral_dice + 0.2, (mask_dice, integral_dice)


def test_silhouette_bce_gradient_matches_autograd_and_finite_differences():
    rng = np.random.default_rng(0)
    integral = rng.uniform(0.05, 3.0, 200).astype(np.float64)
    mask = (rng.random(200) > 0.4).astype(np.float64)
    k = 4.0
    p = torch.tensor(integral, requires_grad=True)
    (silhouette_bce(p, torch.tensor(mask), k) * len(integral)).backward()
    expected = silhouette_gradient(integral, mask, k, min_silhouette=0.0)
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-4)
    assert torch.autograd.gradcheck(lambda x: silhouette_bce(x, torch.tensor(mask), k), (p,))
    # Background rays cost k per mm; a ray inside the mask is pushed up, harder when empty.
    assert expected[mask == 0] == pytest.approx(k)
    assert np.all(expected[mask == 1] < 0)
    # Near p = 0 the exact gradient diverges; the fit's is bounded by the floor of s.
    clipped = silhouette_gradient(np.zeros(1), np.ones(1), k)
    assert np.isfinite(clipped).all() and clipped[0] == pytest.approx(-k / 0.05)
    empty = silhouette_bce(torch.zeros(1), torch.ones(1), k)
    assert torch.isfinite(empty) and empty.item() == pytest.approx(-np.log(1e-6), rel=1e-3)


def test_reconstruct_validates_masks(arc_case):
    _, views = arc_case
    config = build_config("field", iterations=1, device="cpu")
    with pytest.raises(InputError, match="mask2: mask is 90x96 but the geometry says 96x96"):
        reconstruct(views, SMALL_GEOMETRY, config, masks=[views[0] > 0, views[1][:90] > 0])
    with pytest.raises(InputError, match="mask1: is empty"):
        reconstruct(views, SMALL_GEOMETRY, config, masks=[views[0] < 0, views[1] > 0])
    with pytest.raises(InputError, match="masks: expected 2 masks, got 1"):
        reconstruct(views, SMALL_GEOMETRY, config, masks=[views[0] > 0])


def _not_xa(tmp_path, view1):
    dataset = pydicom.dcmread(view1)
    dataset.Modality = "CT"
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    return save_dataset(dataset, tmp_path / "ct.dcm")


def _no_sid(tmp_path, view1):
    dataset = pydicom.dcmread(view1)
    del dataset.DistanceSourceToDetector
    return save_dataset(dataset, tmp_path / "no_sid.dcm")


def _wrong_mask(tmp_path, _):
    path = tmp_path / "small_mask.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((90, 96), 255, np.uint8)), str(path))
    return path


@pytest.mark.parametrize("make,arguments,message", [
    (None, ["--view1", "{v1}"], "give a CASE_DIR, or both --view1 and --view2"),
    (None, ["{case}", "--view1", "{v1}", "--view2", "{v2}"], "CASE_DIR or --view1 and "
     "--view2, not both"),
    (None, ["{case}", "--frame", "3"], "--frame: only with --view1 and --view2"),
    (None, ["--view1", "{v1}", "--view2", "{v2}", "--frame", "1", "2", "3"],
     "--frame: expected one frame number or two"),
    (_not_xa, ["--view1", "{bad}", "--view2", "{v2}"], "not an X-ray angiogram"),
    (_no_sid, ["--view1", "{bad}", "--view2", "{v2}"], "DistanceSourceToDetector"),
    (_wrong_mask, ["--view1", "{v1}", "--view2", "{v2}", "--frame", "2", "--mask1", "{bad}"],
     "mask has shape (90, 96) but the frame is 96x96"),
])
def test_bad_xa_input_is_one_line_and_writes_nothing(xa12, tmp_path, capsys, make, arguments,
                                                     message):
    _, (view1, view2), _ = xa12
    case = tmp_path / "case"
    write_case(case, simulate_case(np.ones((4, 4, 4), np.uint8), VolumeGrid((4, 4, 4)),
                                   SMALL_GEOMETRY))
    bad = make(tmp_path, view1) if make else None
    argv = [a.format(v1=view1, v2=view2, case=case, bad=bad) for a in arguments]
    out = tmp_path / "out"
    assert main(["reconstruct", *argv, "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err
    assert not out.exists()


def test_missing_geometry_tag_can_be_supplied_by_override(xa12, tmp_path):
    _, (view1, view2), _ = xa12
    no_sid = _no_sid(tmp_path, view1)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({
        "volume": SMALL_GRID.to_dict(),
        "views": [{"source_to_detector_mm": SMALL_VIEWS[0].source_to_detector_mm}, {}]}))
    out = tmp_path / "out"
    assert main(["reconstruct", "--view1", str(no_sid), "--view2", str(view2), "--out",
                 str(out), "--geometry", str(overrides), "--frame", "2",
                 "--device", "cpu", "--quiet", "--preset", "field", "--iterations", "2",
                 "--set", "voxel.iterations=20"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["inputs"]["xa"]["views"][0]["geometry"]["source_to_detector_mm"] == pytest.approx(
        SMALL_VIEWS[0].source_to_detector_mm)
