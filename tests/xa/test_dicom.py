"""XA DICOM input: reading runs and their geometry, overrides, bad files, frame choice, pairs."""

import datetime
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sdfcar.io.case import Case
from sdfcar.apps.cli import main
from sdfcar.errors import InputError
from sdfcar.xa.frames import (DIASTOLE_PHASE, END_DIASTOLE_MIN_CONTRAST, cardiac_phases,
                               choose_frame, diastolic_frame)
from sdfcar.geometry import REFERENCE_VIEWS, VolumeGrid
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM
from sdfcar.xa import (ENHANCED_XA_SOP_CLASS, GeometryOverrides, load_geometry_overrides,
                       load_xa_pair, parse_geometry_overrides, prepare_xa_pair,
                       prepare_xa_view, read_xa)
from sdfcar.synthetic.xa import (WATER_MU_PER_MM, CineOptions, background_thickness, phantom_pair,
                             reference_geometry, save_dataset, simulate_run, write_pair,
                             write_xa, xa_dataset)

FRAMES = 24


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """A 24-frame LCA pair at 128^2 (12-bit, ECG marks), its truth and its two files."""
    label, geometry, runs = phantom_pair("lca", 0, 128, CineOptions(frames=FRAMES))
    paths = write_pair(tmp_path_factory.mktemp("cine"), runs)
    return geometry, runs, paths


def _edited(cine, tmp_path, name, **changes):
    """A copy of view 1 with tags changed (None deletes a tag)."""
    dataset = pydicom.dcmread(cine[2][0])
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return save_dataset(dataset, tmp_path / name)


# ----------------------------------------------------------------------------- reading


def test_multiframe_run_has_pixels_geometry_timing_and_r_waves(cine):
    geometry, runs, paths = cine
    run = read_xa(paths[0])
    assert run.number_of_frames == FRAMES and run.sop_class == "X-Ray Angiographic Image Storage"
    np.testing.assert_array_equal(run.pixels, runs[0].stored)
    assert all(view == geometry.views[0] for view in run.views)
    np.testing.assert_allclose(run.frame_times_ms, runs[0].frame_times_ms, atol=1e-3)
    assert run.r_wave_frames == runs[0].r_wave_frames and len(run.r_wave_frames) == 2
    assert run.intensity.relationship == "LIN" and run.intensity.bits_stored == 12
    assert run.pixel_mm() == pytest.approx(1.112 * 757.06 / 993.0)
    assert run.warnings == ()


def test_single_frame_8bit_log_file_recovers_attenuation(tmp_path):
    """LOG storage at 8 bits: attenuation = mu_water B + mu L + const up to noise/quantisation."""
    view = reference_geometry(128).views[1]
    truth = np.zeros(view.detector_shape)
    truth[40:44, 20:110] = 3.0  # a 3 mm-deep bar of opacified lumen
    synthetic = simulate_run(truth, view, CineOptions(frames=1, bits=8), seed=2)
    run = read_xa(write_xa(tmp_path / "single.dcm", synthetic))
    assert run.number_of_frames == 1 and run.r_wave_frames == ()
    assert (run.intensity.relationship, run.intensity.bits_stored) == ("LOG", 8)
    assert any("no recorded scale" in note for note in run.warnings)
    expected = WATER_MU_PER_MM * background_thickness(view, 2) + CONTRAST_MU_PER_MM * truth
    residual = run.attenuation(1) - expected
    assert np.std(residual) < 0.03  # 8-bit LOG step is 0.031 nepers; noise ~1 % per pixel
    assert run.view(1) == view


def test_generator_writes_512_square_12_bit_reference_views(tmp_path):
    view = REFERENCE_VIEWS[0]
    synthetic = simulate_run(np.zeros(view.detector_shape), view, CineOptions(frames=2), seed=1)
    run = read_xa(write_xa(tmp_path / "ref.dcm", synthetic))
    assert run.pixels.shape == (2, 512, 512) and run.pixels.dtype == np.uint16
    assert run.pixels.max() <= 4095 and run.views[1] == view


def test_jpeg_lossless_pixel_data_is_decoded_through_gdcm(tmp_path):
    """pydicom has no JPEG decoder here; SimpleITK's GDCM reads the frames instead."""
    synthetic = simulate_run(np.zeros((64, 64)), reference_geometry(64).views[0],
                             CineOptions(frames=3), seed=0)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path / "gdcm.dcm"))
    writer.SetImageIO("GDCMImageIO")
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG")
    writer.Execute(sitk.GetImageFromArray(synthetic.stored))
    compressed = pydicom.dcmread(tmp_path / "gdcm.dcm")
    dataset = xa_dataset(synthetic)
    dataset.PixelData = compressed.PixelData
    dataset["PixelData"].VR, dataset["PixelData"].is_undefined_length = "OB", True
    dataset.file_meta.TransferSyntaxUID = compressed.file_meta.TransferSyntaxUID
    assert dataset.file_meta.TransferSyntaxUID.is_compressed
    run = read_xa(save_dataset(dataset, tmp_path / "jpeg.dcm"))
    np.testing.assert_array_equal(run.pixels, synthetic.stored)


def test_intensity_sign_and_missing_relationship(cine, tmp_path):
    reference = read_xa(cine[2][0]).attenuation(12)
    dataset = pydicom.dcmread(cine[2][0])
    dataset.PixelData = (4095 - dataset.pixel_array).astype(np.uint16).tobytes()
    dataset.PixelIntensityRelationshipSign = -1
    flipped = read_xa(save_dataset(dataset, tmp_path / "flip.dcm"))
    np.testing.assert_allclose(flipped.attenuation(12), reference)
    run = read_xa(_edited(cine, tmp_path, "norel.dcm", PixelIntensityRelationship=None))
    assert run.intensity.relationship == "LIN" and "taken as linear" in run.warnings[0]


def test_per_frame_angles_from_positioner_increments(cine, tmp_path):
    offsets = [str(0.5 * i) for i in range(FRAMES)]
    vector = read_xa(_edited(cine, tmp_path, "vector.dcm", PositionerMotion="DYNAMIC",
                             PositionerPrimaryAngleIncrement=offsets,
                             PositionerSecondaryAngleIncrement="-1"))
    assert [v.primary_angle_deg for v in vector.views] == pytest.approx(
        [29.7 + 0.5 * i for i in range(FRAMES)])
    assert [v.secondary_angle_deg for v in vector.views] == pytest.approx(
        [0.1 - i for i in range(FRAMES)])
    with pytest.raises(InputError, match=r"PositionerPrimaryAngleIncrement: has 3 values; "
                                         r"expected 1 or one per frame \(24\)"):
        read_xa(_edited(cine, tmp_path, "bad.dcm", PositionerPrimaryAngleIncrement=["1"] * 3))


def test_enhanced_xa_per_frame_functional_groups(cine, tmp_path):
    """Angles per frame in PositionerPositionSequence, SOD as DistanceSourceToIsocenter."""
    dataset = pydicom.dcmread(cine[2][0])
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = ENHANCED_XA_SOP_CLASS
    for keyword in ("PositionerPrimaryAngle", "PositionerSecondaryAngle",
                    "DistanceSourceToPatient", "DistanceSourceToDetector"):
        delattr(dataset, keyword)
    for keyword in ("FrameTime", "FrameTimeVector", "CineRate", "FrameNumbersOfInterest",
                    "FrameOfInterestType", "FrameOfInterestDescription"):
        delattr(dataset, keyword)
    frames = []
    for index in range(FRAMES):
        position, geometry, content, cardiac = Dataset(), Dataset(), Dataset(), Dataset()
        position.PositionerPrimaryAngle, position.PositionerSecondaryAngle = -30 + index, 25
        geometry.DistanceSourceToIsocenter, geometry.DistanceSourceToDetector = 760, 1100
        moment = datetime.datetime(2024, 1, 1, 12) + datetime.timedelta(milliseconds=50 * index)
        content.FrameAcquisitionDateTime = moment.strftime("%Y%m%d%H%M%S.%f")
        cardiac.NominalCardiacTriggerDelayTime = (300 + 50 * index) % 800  # R wave at frame 11
        item = Dataset()
        item.PositionerPositionSequence = [position]
        item.XRayGeometrySequence = [geometry]
        item.FrameContentSequence = [content]
        item.CardiacSynchronizationSequence = [cardiac]
        frames.append(item)
    dataset.PerFrameFunctionalGroupsSequence = frames
    run = read_xa(save_dataset(dataset, tmp_path / "enhanced.dcm"))
    assert run.sop_class == "Enhanced XA Image Storage"
    assert [v.primary_angle_deg for v in run.views] == list(range(-30, -30 + FRAMES))
    assert {(v.secondary_angle_deg, v.source_to_isocenter_mm, v.source_to_detector_mm)
            for v in run.views} == {(25.0, 760.0, 1100.0)}
    np.testing.assert_allclose(run.frame_times_ms, 50.0 * np.arange(FRAMES))
    assert run.r_wave_frames == (11,)


def test_r_wave_pointer_and_frame_time_fallbacks(cine, tmp_path):
    run = read_xa(_edited(cine, tmp_path, "pointer.dcm", FrameNumbersOfInterest=None,
                          FrameOfInterestType=None, FrameOfInterestDescription=None,
                          FrameTimeVector=None, RWavePointer=[4, 16, 40]))
    assert run.r_wave_frames == (4, 16) and "outside 1..24" in run.warnings[0]
    np.testing.assert_allclose(run.frame_times_ms, np.arange(FRAMES) * 1000.0 / 15.0, atol=1e-3)
    run = read_xa(_edited(cine, tmp_path, "rate.dcm", FrameTimeVector=None, FrameTime=None))
    np.testing.assert_allclose(run.frame_times_ms, np.arange(FRAMES) * 1000.0 / 15.0)


def test_overrides_fill_a_missing_tag_and_replace_others(cine, tmp_path):
    path = _edited(cine, tmp_path, "no_sod.dcm", DistanceSourceToPatient=None)
    with pytest.raises(InputError, match=r"no_sod.dcm: DistanceSourceToPatient \(0018,1111\): "
                                         r"missing tag \(give source_to_isocenter_mm"):
        read_xa(path)
    run = read_xa(path, {"source_to_isocenter_mm": 757.06, "primary_angle_deg": -20,
                         "detector_offset_mm": [1.0, -2.0]})
    assert {(v.source_to_isocenter_mm, v.primary_angle_deg, v.detector_offset_mm)
            for v in run.views} == {(757.06, -20.0, (1.0, -2.0))}
    with pytest.raises(InputError, match="detector_shape: comes from the image"):
        read_xa(path, {"detector_shape": [64, 64]})
    with pytest.raises(InputError, match="override sid: unknown field"):
        read_xa(path, {"sid": 1000})


def test_pixel_spacing_fallback_is_reported(cine, tmp_path):
    run = read_xa(_edited(cine, tmp_path, "ps.dcm", ImagerPixelSpacing=None,
                          PixelSpacing=["0.8", "0.8"]))
    assert run.view(1).detector_spacing_mm == (0.8, 0.8)
    assert len(run.warnings) == 1 and "PixelSpacing" in run.warnings[0]


def _rgb_capture(path):
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    dataset.Modality = "XA"
    dataset.Rows = dataset.Columns = 16
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "RGB"
    dataset.PlanarConfiguration = 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(16 * 16 * 3)
    return save_dataset(dataset, path)


def _bad_file(kind, cine, tmp_path):
    if kind == "not DICOM":
        path = tmp_path / "notes.dcm"
        path.write_text("patient notes, not an image\n")
        return path, "not a readable DICOM file"
    if kind in ("truncated pixels", "truncated header"):
        data = cine[2][0].read_bytes()
        path = tmp_path / "truncated.dcm"
        path.write_bytes(data[: len(data) // 2] if kind == "truncated pixels" else data[:400])
        return path, ("pixel data truncated" if kind == "truncated pixels"
                      else "no pixel data")
    if kind == "CT":
        return (_edited(cine, tmp_path, "ct.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
                        Modality="CT"),
                r"not an X-ray angiogram \(Modality CT, SOP class CT Image Storage\)")
    if kind == "RGB capture":
        return _rgb_capture(tmp_path / "capture.dcm"), "colour image"
    if kind == "no angle":
        return (_edited(cine, tmp_path, "noangle.dcm", PositionerPrimaryAngle=None),
                r"PositionerPrimaryAngle \(0018,1510\): missing tag")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not DICOM", "truncated pixels", "truncated header", "CT",
                                  "RGB capture", "no angle"])
def test_bad_files_give_one_line_errors_in_the_api_and_the_cli(kind, cine, tmp_path, capsys):
    path, message = _bad_file(kind, cine, tmp_path)
    with pytest.raises(InputError, match=message) as caught:
        read_xa(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    out = tmp_path / "out"
    assert main(["extract-vessels", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(path) in error
    assert not out.exists() and not list(tmp_path.glob(".out*"))


# ----------------------------------------------------------------------------- frame choice


def test_frame_choice_prefers_a_filled_end_diastolic_frame(cine):
    _, runs, paths = cine
    choice = choose_frame(read_xa(paths[0]))
    assert choice.rule == "end-diastole" and choice.number in runs[0].r_wave_frames
    assert runs[0].contrast[choice.number - 1] > 0.95
    scores = np.array(choice.scores)
    assert scores[choice.number - 1] >= END_DIASTOLE_MIN_CONTRAST * scores.max()
    # Scores follow the opacification: every pre-contrast frame scores below every full one.
    full = runs[0].contrast > 0.95
    assert scores[runs[0].contrast == 0].max() < 0.5 * scores[full].min()


def test_frame_choice_without_ecg_takes_the_most_contrast(cine, tmp_path):
    _, runs, _ = cine
    path = _edited(cine, tmp_path, "noecg.dcm", FrameNumbersOfInterest=None,
                   FrameOfInterestType=None, FrameOfInterestDescription=None)
    run = read_xa(path)
    choice = choose_frame(run)
    assert run.r_wave_frames == () and choice.rule == "most contrast"
    assert runs[0].contrast[choice.number - 1] > 0.95 and "no ECG" in choice.reason
    assert choose_frame(run, 5).number == 5
    with pytest.raises(InputError, match=r"--frame: expected a frame number from 1 to 24, "
                                         r"got 25"):
        choose_frame(run, 25)


def test_cardiac_phases_follow_the_r_waves_and_the_heart_rate(cine, tmp_path):
    _, runs, paths = cine
    run = read_xa(paths[0])
    assert run.heart_rate_bpm == 75.0
    # Two R waves give the interval; the phase is counted from the R-wave frame, which lies
    # within half a frame (33 ms of an 800 ms beat) of the true R wave.
    error = (cardiac_phases(run) - runs[0].phase + 0.5) % 1.0 - 0.5
    assert np.abs(error).max() < 0.05
    one_wave = read_xa(_edited(cine, tmp_path, "one.dcm",
                               FrameNumbersOfInterest=[run.r_wave_frames[0]],
                               FrameOfInterestType=["RWAVE"],
                               FrameOfInterestDescription=["R wave"]))
    np.testing.assert_allclose(cardiac_phases(one_wave), cardiac_phases(run), atol=0.02)
    no_rate = read_xa(_edited(cine, tmp_path, "norate.dcm", HeartRate=None,
                              FrameNumbersOfInterest=[run.r_wave_frames[0]],
                              FrameOfInterestType=["RWAVE"],
                              FrameOfInterestDescription=["R wave"]))
    assert no_rate.heart_rate_bpm is None and cardiac_phases(no_rate) is None


def test_a_short_run_whose_r_wave_is_unfilled_takes_a_diastolic_frame(tmp_path):
    """12 frames (0.8 s at 75 bpm): the only R wave falls before the contrast arrives and
    the most-contrast frame lies near end-systole, where the tree is 3 % smaller."""
    _, _, runs = phantom_pair("rca", 0, 128, CineOptions(frames=12))
    run = read_xa(write_xa(tmp_path / "short.dcm", runs[0]))
    choice = choose_frame(run)
    scores = np.array(choice.scores)
    assert choice.rule == "diastole" and "in diastole" in choice.reason
    assert runs[0].phase[choice.number - 1] >= DIASTOLE_PHASE
    assert scores[choice.number - 1] >= END_DIASTOLE_MIN_CONTRAST * scores.max()
    assert runs[0].phase[int(np.argmax(scores))] < DIASTOLE_PHASE
    assert all(scores[n - 1] < END_DIASTOLE_MIN_CONTRAST * scores.max()
               for n in run.r_wave_frames)


def test_diastolic_frame_falls_back_to_the_filled_frame_nearest_an_r_wave():
    # An 8-frame run covering phases 0-0.6: no well-filled frame in diastole.
    phases = np.array([0.92, 0.0, 0.08, 0.17, 0.25, 0.33, 0.42, 0.5])
    scores = np.array([0.1, 0.2, 0.85, 0.95, 1.0, 0.99, 0.9, 0.7])
    assert diastolic_frame(scores, phases) == (3, "nearest an R wave")
    phases[6:] = [0.62, 0.7]
    assert diastolic_frame(scores, phases) == (7, "in diastole")  # 0.7's score is too low


# ----------------------------------------------------------------------------- pairs


def test_load_xa_pair_returns_the_case_the_reconstruction_consumes(cine):
    geometry, runs, paths = cine
    case = load_xa_pair(*paths)
    assert isinstance(case, Case)
    assert case.geometry.views == geometry.views
    placed = prepare_xa_pair(*paths).report["volume_placement"]
    assert case.geometry.volume.spacing_mm == VolumeGrid().spacing_mm
    assert "visual hull" in placed["rule"]  # the grid is placed on the vessels
    for image, run in zip(case.views, runs):
        assert image.shape == (128, 128) and image.dtype == np.float32
        assert image.min() == 0.0 and 3.0 < image.max() < 3.0 * run.integrals.max()


def test_prepare_xa_pair_keeps_masks_frames_and_report(cine):
    geometry, runs, paths = cine
    volume = VolumeGrid((64, 64, 64), (1.6, 1.6, 1.6))
    user = runs[1].integrals[10] > 0.25
    pair = prepare_xa_pair(*paths, frame=(None, 11), volume=volume, masks=(None, user))
    assert pair.case.geometry.volume == volume and pair.report["volume_placement"] is None
    assert pair.views[1].choice.rule == "given" and pair.views[1].choice.number == 11
    np.testing.assert_array_equal(pair.masks[1], user)
    assert np.all(pair.case.views[1][~user] == 0)
    assert pair.masks[0].dtype == bool and np.all(pair.case.views[0][~pair.masks[0]] == 0)
    report = pair.report
    assert report["angle_between_views_deg"] == pytest.approx(
        geometry.views[0].angle_between(geometry.views[1]), abs=1e-3)
    assert report["views"][1]["extraction"]["mask_source"] == "user"
    assert report["views"][0]["frame"]["rule"] == "end-diastole"
    assert report["views"][0]["geometry"] == geometry.views[0].to_dict()


def test_a_mask_volume_with_one_slice_per_frame_gives_the_chosen_frames_mask(cine, tmp_path):
    """As 3D Slicer exports a segmentation drawn on one frame of a loaded cine run."""
    _, runs, paths = cine
    volume = np.zeros((FRAMES, 128, 128), np.uint8)
    volume[11] = runs[0].integrals[11] > 0.25
    segmentation = tmp_path / "segmentation.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(segmentation))
    prepared = prepare_xa_view(paths[0], 12, mask=segmentation)
    np.testing.assert_array_equal(prepared.extraction.mask, volume[11] > 0)
    assert prepared.report["extraction"]["mask_file"] == str(segmentation)
    with pytest.raises(InputError, match=r"segmentation.nii.gz: the mask is empty"):
        prepare_xa_view(paths[0], 13, mask=segmentation)
    sitk.WriteImage(sitk.GetImageFromArray(volume[:5]), str(segmentation))
    with pytest.raises(InputError, match=r"one slice per frame \(24\), got shape \(5, 128"):
        prepare_xa_view(paths[0], 12, mask=segmentation)


def test_geometry_overrides_shared_per_view_and_volume():
    parsed = parse_geometry_overrides({"source_to_isocenter_mm": 750,
                                       "views": [{}, {"source_to_isocenter_mm": 760,
                                                      "primary_angle_deg": -5}],
                                       "volume": {"shape": [64, 64, 64]}})
    assert parsed == GeometryOverrides(
        ({"source_to_isocenter_mm": 750},
         {"source_to_isocenter_mm": 760, "primary_angle_deg": -5}),
        VolumeGrid((64, 64, 64)))
    with pytest.raises(InputError, match=r"--geometry.views\[1\] sod: unknown field"):
        parse_geometry_overrides({"views": [{}, {"sod": 1}]})
    with pytest.raises(InputError, match=r"--geometry.views: expected a list of two objects"):
        parse_geometry_overrides({"views": [{}]})


def test_geometry_override_files_and_poorly_separated_views(cine, tmp_path):
    path = tmp_path / "geometry.json"
    path.write_text(json.dumps({"views": [{}, {"primary_angle_deg": 31.0}],
                                "volume": {"shape": [32, 32, 32]}}))
    overrides = load_geometry_overrides(path)
    pair = prepare_xa_pair(cine[2][0], cine[2][0], frame=12, overrides=overrides)
    assert pair.case.geometry.volume.shape == (32, 32, 32)
    assert pair.case.geometry.views[1].primary_angle_deg == 31.0
    assert pair.report["angle_between_views_deg"] == pytest.approx(1.3, abs=0.01)
    assert "only 1.3 degrees apart" in pair.report["warnings"][0]
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"geometry.json: not valid JSON"):
        load_geometry_overrides(path)
