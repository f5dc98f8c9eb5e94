"""`sdfcar simulate`: physical-space projection, noise, masks and bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sdfcar.io.case import load_case
from sdfcar.apps.cli import main
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.io.guard import MARKER
from sdfcar.io.images import read_volume, write_volume

SPHERE_CENTRE = np.array([12.0, -8.0, 15.0])
SEED_VIEWS = (ViewGeometry(29.7, 0.1, 993, 757.06, (512, 512), (0.278, 0.278)),
              ViewGeometry(2, 29, 1055, 756.99, (512, 512), (0.278, 0.278)))
ORTHOGONAL_VIEWS = (ViewGeometry(90, 0, 1000, 750, (256, 200), (0.4, 0.5), (3.0, -2.0)),
                    ViewGeometry(-20, 30, 1100, 800, (200, 256), (0.5, 0.4)))


@pytest.fixture(scope="module")
def sphere_label(tmp_path_factory):
    """A 5 mm sphere off the isocenter, on a fine RAS-like (flipped) grid of its own."""
    grid = VolumeGrid((56, 56, 56), (0.25, 0.25, 0.25), tuple(SPHERE_CENTRE + [1.0, -0.5, 0.7]),
                      (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    inside = np.linalg.norm(grid.voxel_centers() - SPHERE_CENTRE, axis=-1) <= 5.0
    path = tmp_path_factory.mktemp("label") / "sphere.nii.gz"
    write_volume(path, inside.astype(np.uint8), grid)
    return path


def write_geometry(path, views, volume=None):
    data = {"views": [v.to_dict() for v in views]}
    if volume is not None:
        data["volume"] = volume
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("views", [SEED_VIEWS, ORTHOGONAL_VIEWS], ids=["seed", "orthogonal"])
def test_sphere_projects_where_the_pinhole_model_says(tmp_path, sphere_label, views):
    geometry = write_geometry(tmp_path / "geometry.json", views)
    assert main(["simulate", "--label", str(sphere_label), "--geometry", str(geometry),
                 "--out", str(tmp_path / "case"), "--device", "cpu"]) == 0
    case = load_case(tmp_path / "case")
    for view, image in zip(views, case.views):
        rows, cols = np.indices(image.shape)
        centroid = np.array([(rows * image).sum(), (cols * image).sum()]) / image.sum()
        expected = view.project_points(SPHERE_CENTRE)
        assert np.linalg.norm(centroid - expected) < 1.5
        assert image.max() == pytest.approx(10.0, rel=0.06)
        assert image.dtype == np.float32


def test_case_folder_contents_round_trip(tmp_path, sphere_label):
    geometry = write_geometry(tmp_path / "g.json", ORTHOGONAL_VIEWS,
                              {"shape": [64, 64, 64], "spacing_mm": [1.6, 1.6, 1.6]})
    main(["simulate", "--label", str(sphere_label), "--geometry", str(geometry),
          "--out", str(tmp_path / "case")])
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == [
        MARKER, "geometry.json", "view1.nii.gz", "view2.nii.gz"]
    saved = CaseGeometry.load(tmp_path / "case" / "geometry.json")
    assert saved.views == ORTHOGONAL_VIEWS
    assert saved.volume.shape == (64, 64, 64)


def test_noise_and_mask_options(tmp_path, sphere_label):
    geometry = write_geometry(tmp_path / "g.json", ORTHOGONAL_VIEWS)
    base = ["simulate", "--label", str(sphere_label), "--geometry", str(geometry)]
    assert main(base + ["--out", str(tmp_path / "clean")]) == 0
    assert main(base + ["--out", str(tmp_path / "gauss"), "--noise", "gaussian:0.05"]) == 0
    assert main(base + ["--out", str(tmp_path / "poisson"), "--noise", "poisson:1e5"]) == 0
    assert main(base + ["--out", str(tmp_path / "mask"), "--mask"]) == 0
    clean = load_case(tmp_path / "clean").views[0]
    gauss = load_case(tmp_path / "gauss").views[0]
    poisson = load_case(tmp_path / "poisson").views[0]
    mask = load_case(tmp_path / "mask").views[0]
    assert np.std(gauss - clean) == pytest.approx(0.05 * clean.max(), rel=0.05)
    # Poisson noise of -ln(N/I0)/mu has a std of about 1/(mu sqrt(I0 exp(-mu L))).
    background = clean == 0
    assert np.std(poisson[background]) == pytest.approx(1 / (0.1 * np.sqrt(1e5)), rel=0.1)
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask, (clean > 0.25).astype(np.float32))


def test_overwrite_is_required_to_replace_a_case(tmp_path, sphere_label, capsys):
    geometry = write_geometry(tmp_path / "g.json", ORTHOGONAL_VIEWS)
    args = ["simulate", "--label", str(sphere_label), "--geometry", str(geometry),
            "--out", str(tmp_path / "case")]
    assert main(args) == 0
    before = (tmp_path / "case" / "view1.nii.gz").stat().st_mtime_ns
    assert main(args) == 2
    assert "already exists (use --overwrite" in capsys.readouterr().err
    assert (tmp_path / "case" / "view1.nii.gz").stat().st_mtime_ns == before
    assert main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "g.json"]


def _bad_label(tmp_path, kind):
    # ITK's NIfTI reader turns NaN into 0, so the NaN case uses MetaImage.
    path = tmp_path / (f"{kind}.mha" if kind == "nan" else f"{kind}.nii.gz")
    grid = VolumeGrid((8, 8, 8))
    if kind == "nan":
        array = np.zeros(grid.shape, np.float32)
        array[2, 2, 2] = np.nan
        write_volume(path, array, grid)
    elif kind == "flat":
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8), np.uint8)), str(path))
    elif kind == "empty":
        write_volume(path, np.zeros(grid.shape, np.uint8), grid)
    elif kind == "garbage":
        path.write_bytes(b"this is not an image")
    return path


def _geometry_with(tmp_path, path, value):
    data = {"views": [v.to_dict() for v in ORTHOGONAL_VIEWS]}
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "bad.json").write_text(json.dumps(data).replace('"NAN"', "NaN"))
    return tmp_path / "bad.json"


BAD_GEOMETRY = [
    (("views", 0, "source_to_isocenter_mm"), 1200, "source_to_isocenter_mm: must be less"),
    (("views", 1, "detector_spacing_mm"), [0, 0.4], "detector_spacing_mm[0]: expected a pos"),
    (("views", 0, "primary_angle_deg"), 200, "primary_angle_deg: expected an angle in [-180"),
    (("views", 0, "secondary_angle_deg"), "NAN", "NaN is not allowed"),
    (("views", 0, "gantry"), 1, "views[0].gantry: unknown key"),
]


@pytest.mark.parametrize("path,value,message", BAD_GEOMETRY, ids=[m for *_, m in BAD_GEOMETRY])
def test_bad_geometry_exits_2_with_one_line(tmp_path, sphere_label, capsys, path, value, message):
    geometry = _geometry_with(tmp_path, path, value)
    code = main(["simulate", "--label", str(sphere_label), "--geometry", str(geometry),
                 "--out", str(tmp_path / "case")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "case").exists()


@pytest.mark.parametrize("kind,message", [
    ("missing", "file not found"), ("flat", "expected a 3D scalar volume, got 2D"),
    ("nan", "contains NaN"), ("empty", "label volume is empty"), ("garbage", "corrupt or truncated gzip data"),
])
def test_bad_label_exits_2_and_writes_nothing(tmp_path, capsys, kind, message):
    label = _bad_label(tmp_path, kind)
    geometry = write_geometry(tmp_path / "g.json", ORTHOGONAL_VIEWS)
    code = main(["simulate", "--label", str(label), "--geometry", str(geometry),
                 "--out", str(tmp_path / "case")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "case").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_bad_option_values_exit_2(tmp_path, sphere_label):
    geometry = write_geometry(tmp_path / "g.json", ORTHOGONAL_VIEWS)
    result = subprocess.run(
        [sys.executable, "-m", "sdfcar.apps.cli", "simulate", "--label", str(sphere_label),
         "--geometry", str(geometry), "--out", str(tmp_path / "case"), "--noise", "loud"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "--noise" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and not (tmp_path / "case").exists()


def test_label_geometry_is_preserved_on_read(sphere_label):
    label, grid = read_volume(sphere_label)
    assert grid.direction == (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    np.testing.assert_allclose(grid.center_mm, SPHERE_CENTRE + [1.0, -0.5, 0.7], atol=1e-5)
    assert label.shape == (56, 56, 56)
