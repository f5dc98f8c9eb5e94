"""`sdfcar.io.outputs.write_outputs`: files, LPS geometry, Slicer segmentation, mesh, atomicity."""

import json
import math

import numpy as np
import pytest
import slicerio
from PIL import Image

from sdfcar.errors import InputError
from sdfcar.io import outputs
from sdfcar.io.guard import MARKER
from sdfcar.io.images import read_volume
from sdfcar.io.mesh import surface_from_sdf
from sdfcar.geometry import VolumeGrid

from conftest import TUBE_AXIS as AXIS
from conftest import TUBE_RADIUS_MM as RADIUS_MM
from conftest import make_result, tube_distance

FILES = ["label.nii.gz", "occupancy.nii.gz", "report.png", "run.json", "mesh.vtk",
         "sdf.nii.gz", "segmentation.seg.nrrd", MARKER]


def read_vtk(path):
    """Minimal legacy binary VTK PolyData reader: (points (V, 3), triangles (F, 3))."""
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    assert lines[0].startswith(b"# vtk DataFile")
    assert b"SPACE=LPS" in lines[1] and lines[2] == b"BINARY"
    assert lines[3] == b"DATASET POLYDATA"
    rest = lines[4]
    head, rest = rest.split(b"\n", 1)
    count = int(head.split()[1])
    assert head.split()[0] == b"POINTS" and head.split()[2] == b"float"
    points = np.frombuffer(rest[:12 * count], ">f4").reshape(-1, 3)
    rest = rest[12 * count:]
    assert rest.startswith(b"\n")
    if rest == b"\n":  # no triangles: VTK omits the POLYGONS block
        return points.astype(float), np.zeros((0, 3), dtype=int)
    head, rest = rest[1:].split(b"\n", 1)
    keyword, cells, size = head.split()
    assert keyword == b"POLYGONS" and int(size) == 4 * int(cells)
    polygons = np.frombuffer(rest[:4 * int(size)], ">i4").reshape(-1, 4)
    assert rest[4 * int(size):] == b"\n"
    assert np.all(polygons[:, 0] == 3)
    return points.astype(float), polygons[:, 1:]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    result, center = make_result()
    out = tmp_path_factory.mktemp("outputs") / "case1"
    assert outputs.write_outputs(out, result, extra={"case": "synthetic", "gpu": None}) == out
    return out, result, center


def test_every_file_is_written_and_volumes_keep_their_geometry(written):
    out, result, _ = written
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name, expected, dtype in [("label.nii.gz", result.label, np.uint8),
                                  ("sdf.nii.gz", result.sdf, np.float32),
                                  ("occupancy.nii.gz", result.occupancy, np.float32)]:
        array, grid = read_volume(out / name)
        assert array.dtype == dtype
        np.testing.assert_array_equal(array, expected)
        np.testing.assert_allclose(grid.origin_mm, result.grid.origin_mm, atol=1e-5)
        np.testing.assert_allclose(grid.spacing_mm, result.grid.spacing_mm)
        np.testing.assert_allclose(grid.direction, result.grid.direction, atol=1e-6)


def test_segmentation_reads_back_in_slicerio_with_lps_geometry(written):
    out, result, _ = written
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert len(seg["segments"]) == 1
    segment = seg["segments"][0]
    assert segment["name"] == "Coronary artery" and segment["labelValue"] == 1
    assert segment["color"] == pytest.approx([0.85, 0.2, 0.2])
    assert segment["layer"] == 0 and segment["id"]
    assert seg["containedRepresentationNames"] == ["Binary labelmap", "Closed surface"]
    assert seg["masterRepresentation"] == "Binary labelmap"
    np.testing.assert_array_equal(seg["voxels"], result.label)
    np.testing.assert_allclose(seg["ijkToLPS"], result.grid.affine, atol=1e-5)
    i0, i1, j0, j1, k0, k1 = segment["extent"]
    inside = np.argwhere(result.label)
    assert (i0, j0, k0) == tuple(inside.min(0)) and (i1, j1, k1) == tuple(inside.max(0))


def test_segmentation_voxel_lands_at_its_lps_point(tmp_path):
    import SimpleITK as sitk

    grid = VolumeGrid((5, 6, 7), (0.5, 0.7, 0.9), (3, -2, 5), (0, -1, 0, 1, 0, 0, 0, 0, 1))
    label = np.zeros(grid.shape, np.uint8)
    label[1, 2, 3] = 1
    path = outputs.write_segmentation(tmp_path / "s.seg.nrrd", label, grid)
    image = sitk.ReadImage(str(path))
    index = tuple(int(v) for v in np.argwhere(sitk.GetArrayFromImage(image))[0][::-1])
    assert index == (1, 2, 3)
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index),
                               (grid.affine @ [1, 2, 3, 1])[:3], atol=1e-6)


def test_mesh_lies_on_the_tube_surface_in_lps(written):
    out, result, center = written
    points, triangles = read_vtk(out / "mesh.vtk")
    assert len(points) > 100 and triangles.max() < len(points)
    distance = tube_distance(points, center)
    assert np.abs(distance - RADIUS_MM).max() < 0.5
    corners = result.grid.affine @ np.array([[0, 0, 0, 1], [39, 39, 39, 1]]).T
    low, high = corners[:3].min(1), corners[:3].max(1)
    assert np.all(points >= low - 0.5) and np.all(points <= high + 0.5)


@pytest.mark.parametrize("direction", [(-1, 0, 0, 0, -1, 0, 0, 0, 1),  # rotation
                                       (-1, 0, 0, 0, 1, 0, 0, 0, 1)])  # mirror
def test_mesh_normals_point_out_of_the_vessel(direction):
    result, center = make_result(direction)
    vertices, faces = surface_from_sdf(result.sdf, result.grid)
    a, b, c = (vertices[faces[:, n]] for n in range(3))
    normals = np.cross(b - a, c - a)
    middle = (a + b + c) / 3 - center
    radial = middle - np.outer(middle @ AXIS, AXIS)
    assert np.mean(np.einsum("ij,ij->i", normals, radial) > 0) > 0.99


def test_report_is_a_png(written):
    out, _, _ = written
    with Image.open(out / "report.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 600 <= width <= 1400 and 500 <= height <= 1200


def test_run_json_is_strict_and_merged(written):
    out, _, _ = written
    run = json.loads((out / "run.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert run["case"] == "synthetic" and run["gpu"] is None
    field = run["statistics"]["field"]
    assert field["loss_curve"] == [1.0, None, 0.5] and field["best"] is None
    assert run["vessel_voxels"] > 0 and math.isclose(field["dice"], 0.5)


def test_empty_label_still_gives_valid_files(tmp_path):
    result, _ = make_result(empty=True)
    out = outputs.write_outputs(tmp_path / "empty", result)
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert [s["name"] for s in seg["segments"]] == ["Coronary artery"]
    assert seg["segments"][0]["extent"] == [0, -1, 0, -1, 0, -1]
    assert not seg["voxels"].any()
    points, triangles = read_vtk(out / "mesh.vtk")
    assert points.shape == (0, 3) and triangles.shape == (0, 3)


def test_existing_folder_is_refused_then_replaced_with_overwrite(tmp_path):
    result, _ = make_result()
    out = tmp_path / "case"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        outputs.write_outputs(out, result)
    with pytest.raises(InputError, match="not written by sdfcar"):
        outputs.write_outputs(out, result, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    (out / "old.txt").unlink()
    outputs.write_outputs(out, result, overwrite=True)
    (out / "label.nii.gz").write_bytes(b"stale")
    outputs.write_outputs(out, result, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert read_volume(out / "label.nii.gz")[0].any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    result, _ = make_result()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outputs, "write_vtk", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        outputs.write_outputs(tmp_path / "case", result)
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "old.txt").write_text("keep me")
    (old / MARKER).write_text("{}")
    with pytest.raises(RuntimeError, match="disk full"):
        outputs.write_outputs(old, result, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert (old / "old.txt").read_text() == "keep me"
