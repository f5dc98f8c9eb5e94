"""The real GE XA runs of ``<repo>/../shared/real-xa`` (static phantom; skipped when absent).

Measured on them (frame chosen automatically): vessel mask 6.3 % (IM1, with the spacing
override), 8.4 % (IM5), 7.9 % (IM6) of the image; the largest 8-connected component holds
96 %, 100 %, 100 % of it; nothing within 20 px of the border. Before the collimated border
was excluded the masks were 9-10 % of the image, 42-44 % of them in that band (the bright
frame in the run report's target proxy), and the largest component held only 55-58 %.
Bounds: a tree of a few 2-5 mm vessels 100-200 mm long at about 0.3 mm per pixel covers 3-12 %
of a 512^2 image; a connected phantom tree keeps at least 90 % in one piece.
"""

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sdfcar.apps.cli import main
from sdfcar.config import CalibrationSettings
from sdfcar.pipeline.calibration import EpipolarSearch
from sdfcar.xa import prepare_xa_pair, prepare_xa_view, read_xa

REAL_XA = Path(__file__).resolve().parents[2].parent / "shared" / "real-xa"
pytestmark = pytest.mark.skipif(not (REAL_XA / "IM5.dcm").is_file(),
                                reason=f"real XA files not found at {REAL_XA}")
SPACING = {"detector_spacing_mm": [0.390625, 0.390625]}
#: file: primary, secondary angle (deg), SID, SOD (mm), frames, spacing source
EXPECTED = {
    "IM1": (31.3, 0.1, 860.0, 720.0, 14, "FieldOfViewDimensions / (Rows, Columns)"),
    "IM5": (-26.5, -32.7, 931.0, 720.0, 16, "ImagerPixelSpacing"),
    "IM6": (24.0, -18.8, 939.0, 720.0, 9, "ImagerPixelSpacing"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_runs_read_with_their_tags(name):
    primary, secondary, sid, sod, frames, source = EXPECTED[name]
    path = REAL_XA / f"{name}.dcm"
    run = read_xa(path)
    view = run.view(1)
    assert (view.primary_angle_deg, view.secondary_angle_deg) == (primary, secondary)
    assert (view.source_to_detector_mm, view.source_to_isocenter_mm) == (sid, sod)
    assert run.number_of_frames == frames and view.detector_shape == (512, 512)
    assert view.detector_spacing_mm == (0.390625, 0.390625) and run.spacing_source(1) == source
    assert run.intensity.relationship == "DISP" and run.intensity.bits_stored == 8
    assert run.summary()["ecg"] is False and run.frame_times_ms[1] == pytest.approx(66.6667)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID.name.startswith("JPEG Lossless")
    # pydicom's decoder (pylibjpeg-libjpeg) and GDCM agree on every frame
    np.testing.assert_array_equal(run.pixels, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


def test_im1_has_no_imager_pixel_spacing_and_takes_the_override():
    dataset = pydicom.dcmread(REAL_XA / "IM1.dcm", stop_before_pixels=True)
    assert "ImagerPixelSpacing" not in dataset and "PixelSpacing" not in dataset
    assert str(dataset.PixelIntensityRelationship) == "DISP"
    run = read_xa(REAL_XA / "IM1.dcm", {"detector_spacing_mm": [0.4, 0.4]})
    assert run.view(3).detector_spacing_mm == (0.4, 0.4) and run.spacing_source(3) == "override"
    fallback = read_xa(REAL_XA / "IM1.dcm")
    assert any("field of view 200 x 200 mm over 512 x 512" in w for w in fallback.warnings)


def test_im5_and_im6_say_drm_and_are_read_as_display_data():
    run = read_xa(REAL_XA / "IM5.dcm")
    assert run.summary()["intensity"]["stored_as"] == "DRM"
    tags = run.detector_tags
    assert (tags["CollimatorUpperHorizontalEdge"], tags["CollimatorLowerHorizontalEdge"]) == (6, 506)


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def extracted(request):
    overrides = SPACING if request.param == "IM1" else None
    return request.param, prepare_xa_view(REAL_XA / f"{request.param}.dcm", None, overrides)


def test_real_runs_give_a_plausible_connected_vessel_mask(extracted):
    name, prepared = extracted
    mask = prepared.extraction.mask
    assert 0.03 < mask.mean() < 0.12, name
    labels, _ = ndimage.label(mask, np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() >= 0.9 * sizes.sum(), name


def test_no_vessel_frame_along_the_collimated_border(extracted):
    """The collimator's dark band was a ridge the vessel filter took for a vessel."""
    name, prepared = extracted
    band = np.ones((512, 512), bool)
    band[20:-20, 20:-20] = False
    mask, integral = prepared.extraction.mask, prepared.extraction.integral
    assert mask[band].sum() < 0.02 * mask.sum(), name
    assert integral[band].sum() < 0.02 * integral.sum(), name
    assert 0.75 < prepared.extraction.info["exposed_field_fraction"] < 0.9, name


def test_xa_geometry_says_where_the_spacing_came_from(capsys):
    assert main(["xa-geometry", str(REAL_XA / "IM1.dcm"), "--frame", "2"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["detector_spacing_source"] == "FieldOfViewDimensions / (Rows, Columns)"
    assert answer["view"]["detector_spacing_mm"] == [0.390625, 0.390625]


def _inconsistency(overrides=None) -> float:
    pair = prepare_xa_pair(REAL_XA / "IM5.dcm", REAL_XA / "IM6.dcm", overrides=overrides)
    images = [np.asarray(view, float) for view in pair.case.views]
    masks = [np.asarray(mask) > 0 for mask in pair.masks]
    search = EpipolarSearch(pair.case.geometry.views, images, masks, CalibrationSettings())
    return search.inconsistency(np.zeros(6)), pair


@pytest.mark.slow
def test_the_table_move_between_im5_and_im6_makes_the_pair_consistent():
    """The GE table moved (-1.5, -11.2, -33.7) mm between the runs: following it takes the
    epipolar inconsistency from 0.48 to 0.027 (synthetic XA at exact geometry: 0.024)."""
    followed, pair = _inconsistency()
    assert pair.report["table"]["applied_shift_mm"] == [1.5, 11.2, 33.7]
    assert followed < 0.05
    for prepared in pair.views:  # DRM data: the proxy is scaled to the vessels' widths
        assert "vessel widths" in prepared.extraction.info["mu_source"]
        assert 2.0 < prepared.extraction.info["integral_mean_in_mask_mm"] < 4.0
    ignored, _ = _inconsistency([{}, {"correction_translation_mm": [0.0, 0.0, 0.0]}])
    assert ignored > 0.3


@pytest.mark.slow
def test_the_real_pair_reconstructs_end_to_end(tmp_path):
    """``sdfcar reconstruct --view1 IM5 --view2 IM6`` as a user runs it: the default preset
    (sdf-tree), the grid placed on the vessels, the table followed, self-calibrated, up to 4
    trees. Measured (2026-12-03): 3 pieces, reprojection silhouette Dice 0.726 / 0.697 (the
    tubes preset: 4 pieces, 0.772 / 0.763), radii 0.29-2.8 mm, 68 s on 2 quiet cores. Issue
    22 asks 0.8 and one connected tree; this holds what is reached."""
    out = tmp_path / "rec"
    assert main(["reconstruct", "--view1", str(REAL_XA / "IM5.dcm"), "--view2",
                 str(REAL_XA / "IM6.dcm"), "--out", str(out), "--progress", "none"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["preset"] == "sdf-tree" and run["inputs"]["xa"]["volume_placement"]["hull_box_mm"]
    assert all(view["silhouette_dice"] > 0.65 for view in run["reprojection"])
    assert 1 <= run["components"] <= 4
    radii = [r for vessel in run["statistics"]["tree"]["centrelines"]
             for r in vessel["radii"]]
    assert 0.25 <= min(radii) and max(radii) <= 3.0
