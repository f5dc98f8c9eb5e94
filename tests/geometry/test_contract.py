"""Geometry contract: orientation, pinhole model, JSON validation and DICOM tags."""

import json

import numpy as np
import pytest

from sdfcar.errors import InputError
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.geometry.rotations import rotation_vector, rotation_vector_of


def view(primary=0.0, secondary=0.0, sid=1000.0, sod=750.0, shape=(64, 80),
         spacing=(0.5, 0.4), offset=(0.0, 0.0)):
    return ViewGeometry(primary, secondary, sid, sod, shape, spacing, offset)


def test_ap_view_source_posterior_beam_anterior():
    ap = view()
    np.testing.assert_allclose(ap.source, [0, 750, 0], atol=1e-9)
    np.testing.assert_allclose(ap.detector_center, [0, -250, 0], atol=1e-9)
    np.testing.assert_allclose(ap.column_direction, [1, 0, 0], atol=1e-12)  # to patient's left
    np.testing.assert_allclose(ap.row_direction, [0, 0, -1], atol=1e-12)  # head -> feet


def test_lao90_puts_detector_left_and_cra90_puts_it_superior():
    assert view(primary=90).detector_center[0] == pytest.approx(250.0)
    assert view(secondary=90).detector_center[2] == pytest.approx(250.0)
    # RAO puts the detector on the patient's right, CAU below.
    assert view(primary=-90).detector_center[0] == pytest.approx(-250.0)
    assert view(secondary=-90).detector_center[2] == pytest.approx(-250.0)


def test_posterior_point_in_lao90_projects_right_of_centre_column():
    lao = view(primary=90)
    row, col = lao.project_points(np.array([0.0, 20.0, 0.0]))
    assert col > (lao.detector_shape[1] - 1) / 2 + 1
    assert row == pytest.approx((lao.detector_shape[0] - 1) / 2)


def test_superior_point_in_ap_projects_above_centre_row():
    ap = view()
    row, col = ap.project_points(np.array([0.0, 0.0, 15.0]))
    assert row < (ap.detector_shape[0] - 1) / 2 - 1
    assert col == pytest.approx((ap.detector_shape[1] - 1) / 2)


@pytest.mark.parametrize("primary,secondary", [(0, 0), (29.7, 0.1), (2, 29), (-35, -20), (90, 30)])
def test_pixel_centres_and_projection_matrix_agree(primary, secondary):
    v = view(primary, secondary, offset=(3.0, -2.5))
    rows, cols = np.meshgrid(np.arange(0, 64, 7), np.arange(0, 80, 9), indexing="ij")
    centres = v.pixel_centers()[rows, cols]
    # Any point on the ray from the source through a pixel centre lands on that pixel.
    for fraction in (0.3, 0.75, 1.0):
        points = v.source + fraction * (centres - v.source)
        projected = v.project_points(points)
        np.testing.assert_allclose(projected[..., 0], rows, atol=1e-6)
        np.testing.assert_allclose(projected[..., 1], cols, atol=1e-6)
    # The isocenter projects to the detector centre, shifted by the principal-point offset.
    row, col = v.project_points(np.zeros(3))
    assert row == pytest.approx(31.5 - 3.0 / 0.5 * 1.0)
    assert col == pytest.approx(39.5 + 2.5 / 0.4)


def test_pixel_rays_are_the_ray_directions_through_pixel_centres():
    v = view(29.7, -12.0, offset=(3.0, -2.5))
    rows, cols = np.array([0, 5, 63, 17]), np.array([79, 0, 40, 17])
    # The table lookup returns the same floats as computing the rays, so traced trees do
    # not depend on which one a caller uses.
    assert np.array_equal(v.pixel_rays(rows, cols), v.ray_directions(rows, cols))
    np.testing.assert_allclose(np.linalg.norm(v.pixel_rays(rows, cols), axis=1), 1.0)


def test_magnification_is_sid_over_sod():
    v = view()
    row, col = v.project_points(np.array([10.0, 0.0, 0.0]))
    assert (col - 39.5) * 0.4 == pytest.approx(10.0 * 1000.0 / 750.0)


def test_volume_grid_affine_round_trip_with_direction():
    direction = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    grid = VolumeGrid((10, 12, 14), (0.5, 0.7, 1.1), (3.0, -4.0, 5.0), direction)
    again = VolumeGrid.from_origin(grid.shape, grid.spacing_mm, grid.origin_mm, direction)
    np.testing.assert_allclose(again.center_mm, grid.center_mm, atol=1e-12)
    centres = grid.voxel_centers()
    np.testing.assert_allclose(centres.mean(axis=(0, 1, 2)), grid.center_mm, atol=1e-9)
    np.testing.assert_allclose(centres[1, 0, 0] - centres[0, 0, 0], [-0.5, 0, 0], atol=1e-12)
    index = grid.lps_to_index(centres[3, 4, 5])
    np.testing.assert_allclose(index, [3, 4, 5], atol=1e-9)


def test_case_geometry_json_round_trip(tmp_path):
    case = CaseGeometry(
        (view(29.7, 0.1, 993, 757.06, (512, 512), (0.278, 0.278), (1.5, -2.0)),
         view(2, 29, 1055, 756.99, (512, 512), (0.278, 0.278))),
        VolumeGrid((64, 64, 32), (1.6, 1.6, 3.2), (1.0, 2.0, 3.0)),
    )
    path = tmp_path / "geometry.json"
    path.write_text(case.to_json())
    assert CaseGeometry.load(path) == case
    assert json.loads(path.read_text())["views"][0]["detector_offset_mm"] == [1.5, -2.0]


def test_volume_is_optional_and_defaults_to_128_cubed():
    data = {"views": [view().to_dict(), view(90).to_dict()]}
    loaded = CaseGeometry.from_dict(data)
    assert loaded.volume == VolumeGrid((128, 128, 128), (0.8, 0.8, 0.8), (0.0, 0.0, 0.0))


def _valid():
    return {"views": [view().to_dict(), view(30, 20).to_dict()],
            "volume": {"shape": [32, 32, 32], "spacing_mm": [1, 1, 1], "center_mm": [0, 0, 0]}}


def _set(data, path, value):
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()

INVALID = [
    (("views", 0, "primary_angle_deg"), _DELETE, "views[0].primary_angle_deg: missing"),
    (("views", 1, "secondary_angle_deg"), _DELETE, "views[1].secondary_angle_deg: missing"),
    (("views", 0, "source_to_detector_mm"), _DELETE, "views[0].source_to_detector_mm: missing"),
    (("views", 0, "source_to_isocenter_mm"), _DELETE, "source_to_isocenter_mm: missing"),
    (("views", 0, "detector_shape"), _DELETE, "views[0].detector_shape: missing"),
    (("views", 0, "detector_spacing_mm"), _DELETE, "views[0].detector_spacing_mm: missing"),
    (("views", 0, "primary_angle_deg"), 181.0, "views[0].primary_angle_deg: expected an angle"),
    (("views", 1, "secondary_angle_deg"), -190, "views[1].secondary_angle_deg: expected an angle"),
    (("views", 0, "primary_angle_deg"), "LAO 30", "primary_angle_deg: expected a number"),
    (("views", 0, "source_to_isocenter_mm"), 1000.0, "must be less than source_to_detector_mm"),
    (("views", 0, "source_to_detector_mm"), 0, "views[0].source_to_detector_mm: expected a pos"),
    (("views", 1, "detector_spacing_mm"), [0.3, 0.0], "views[1].detector_spacing_mm[1]: expected a pos"),
    (("views", 0, "detector_shape"), [512], "views[0].detector_shape: expected 2 values"),
    (("views", 0, "detector_shape"), [512, 0], "views[0].detector_shape[1]: expected an integer >= 1"),
    (("views", 0, "detector_shape"), [512.5, 512], "views[0].detector_shape[0]: expected an integer"),
    (("views", 0, "detector_offset_mm"), "none", "views[0].detector_offset_mm: expected a list"),
    (("views", 0, "focal_spot"), 1.0, "views[0].focal_spot: unknown key"),
    (("views", 1, "correction_rotation_deg"), [1, 2], "views[1].correction_rotation_deg: expected 3"),
    (("views", 1, "correction_translation_mm"), [0, "x", 0], "correction_translation_mm[1]: expected a n"),
    (("views",), [], "views: expected a list of 2 views"),
    (("volume", "shape"), [32, 32, 1], "volume.shape[2]: expected an integer >= 2"),
    (("volume", "spacing_mm"), [1, 0, 1], "volume.spacing_mm[1]: expected a positive number"),
    (("volume", "center_mm"), [0, 0], "volume.center_mm: expected 3 values"),
    (("volume", "direction"), [1, 0, 0, 0, 2, 0, 0, 0, 1], "volume.direction: expected an ortho"),
    (("volume", "origin"), [0, 0, 0], "volume.origin: unknown key"),
    (("detector",), {}, "detector: unknown key"),
]


@pytest.mark.parametrize("path,value,message", INVALID, ids=[m for _, _, m in INVALID])
def test_each_invalid_field_names_itself(path, value, message):
    with pytest.raises(InputError) as error:
        CaseGeometry.from_dict(_set(_valid(), path, value))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_nan_and_bad_json_are_rejected_with_the_file_name(tmp_path):
    path = tmp_path / "geometry.json"
    path.write_text(json.dumps(_valid()).replace("750.0", "NaN"))
    with pytest.raises(InputError, match=r"geometry.json: NaN is not allowed"):
        CaseGeometry.load(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"geometry.json: not valid JSON"):
        CaseGeometry.load(path)
    with pytest.raises(InputError, match=r"missing.json: file not found"):
        CaseGeometry.load(tmp_path / "missing.json")


@pytest.mark.parametrize("top", [[1, 2], "views", 3, None])
def test_a_top_level_that_is_not_an_object_names_the_file_once(tmp_path, top):
    path = tmp_path / "geometry.json"
    path.write_text(json.dumps(top))
    with pytest.raises(InputError) as error:
        CaseGeometry.load(path)
    assert str(error.value) == f"{path}: expected an object, got {type(top).__name__}"
    with pytest.raises(InputError, match=r"^expected an object, got list$"):
        CaseGeometry.from_dict([], "")


@pytest.mark.parametrize("path,value,message", INVALID, ids=[m for _, _, m in INVALID])
def test_no_message_has_an_empty_field(path, value, message):
    with pytest.raises(InputError) as error:
        CaseGeometry.from_dict(_set(_valid(), path, value), "geometry.json")
    text = str(error.value)
    assert text.startswith("geometry.json: ") and ": :" not in text
    assert text.split(": ")[1].strip()  # "file: field: ..." or "file: expected ..."


def test_from_dicom_tags_by_keyword_and_by_tag_number():
    tags = {"PositionerPrimaryAngle": "29.7", "PositionerSecondaryAngle": 0.1,
            "DistanceSourceToDetector": 993, "DistanceSourceToPatient": 757.06,
            "ImagerPixelSpacing": ["0.278", "0.278"], "Rows": 512, "Columns": 512}
    by_keyword = ViewGeometry.from_dicom_tags(tags)
    by_number = ViewGeometry.from_dicom_tags({
        "(0018,1510)": 29.7, "0018,1511": 0.1, "00181110": 993, "0018,1111": 757.06,
        "0018,1164": [0.278, 0.278], "0028,0010": 512, "0028,0011": 512})
    assert by_keyword == by_number
    assert by_keyword.primary_angle_deg == 29.7
    assert by_keyword.detector_shape == (512, 512)


def test_from_dicom_tags_names_the_missing_tag_and_falls_back_to_pixel_spacing():
    tags = {"PositionerPrimaryAngle": 0, "PositionerSecondaryAngle": 0,
            "DistanceSourceToDetector": 1000, "Rows": 64, "Columns": 64,
            "ImagerPixelSpacing": [0.3, 0.3]}
    with pytest.raises(InputError, match=r"DistanceSourceToPatient \(0018,1111\): missing tag"):
        ViewGeometry.from_dicom_tags(tags, "a.dcm")
    tags["DistanceSourceToPatient"] = 750
    del tags["ImagerPixelSpacing"]
    tags["PixelSpacing"] = [0.2, 0.2]
    with pytest.warns(UserWarning, match="ImagerPixelSpacing"):
        fallback = ViewGeometry.from_dicom_tags(tags, "a.dcm")
    assert fallback.detector_spacing_mm == (0.2, 0.2)


def test_angle_between_views():
    assert view(0, 0).angle_between(view(90, 0)) == pytest.approx(90.0)
    assert view(30, 0).angle_between(view(0, 30)) == pytest.approx(41.41, abs=0.01)


def test_a_corrected_view_moves_the_whole_c_arm_rigidly_and_round_trips():
    """Moving the C-arm by (Q, q) images a point as the nominal view images Q^T (x - q);
    corrections compose; only a corrected view writes the correction fields."""
    nominal = view(30, 10)
    assert "correction_rotation_deg" not in nominal.to_dict() and not nominal.is_corrected
    rotation, shift = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.0, -2.0])
    moved = nominal.moved(rotation, shift)
    points = np.random.default_rng(0).normal(size=(20, 3)) * 30
    q = rotation_vector(rotation)
    assert np.allclose(moved.project_points(points), nominal.project_points((points - shift) @ q))
    assert np.isclose(np.linalg.norm(moved.source - shift), nominal.source_to_isocenter_mm)
    twice = moved.moved(-rotation, np.zeros(3)).moved(np.zeros(3), -(rotation_vector(-rotation) @ shift))
    assert np.allclose(twice.project_points(points), nominal.project_points(points))
    assert ViewGeometry.from_dict(moved.to_dict()) == moved
    assert np.allclose(rotation_vector_of(rotation_vector(rotation)), rotation)
