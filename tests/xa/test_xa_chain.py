"""The second, independent synthetic XA generator (:mod:`sdfcar.synthetic.xa_chain`): its
files read through the vendor paths it exercises, and the 2D step finds its vessels.

Measured at 256^2 (frame chosen automatically, the bolus peak): mask Dice against the true
silhouette (integral > 0.25 mm) 0.805 / 0.831 (lca0 views 1 / 2), 0.796 / 0.863 (rca0);
0.83-0.89 when the catheter, which the filter rightly finds too, counts as vessel. The
threshold 0.75 leaves about 0.05 below the lowest for noise seeds; for comparison the first
generator (:mod:`sdfcar.synthetic.xa`) gives 0.82 mean / 0.74 min at 256^2 (test_vessels.py).
"""

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from sdfcar.geometry import VolumeGrid
from sdfcar.synthetic.phantom import label_volume
from sdfcar.synthetic.simulate import DEFAULT_MASK_THRESHOLD_MM, project_label
from sdfcar.synthetic.xa import reference_geometry
from sdfcar.synthetic.xa_chain import ChainOptions, bolus, simulate_chain_run, write_chain_xa
from sdfcar.xa import prepare_xa_view, read_xa


@pytest.fixture(scope="module", params=["lca", "rca"])
def chain_runs(request, tmp_path_factory):
    grid = VolumeGrid()
    geometry = reference_geometry(256, grid)
    integrals = project_label(label_volume(request.param, 0, grid), grid, geometry.views)
    folder = tmp_path_factory.mktemp(f"chain_{request.param}")
    runs = [simulate_chain_run(image, view, seed=index)
            for index, (image, view) in enumerate(zip(integrals, geometry.views))]
    paths = [write_chain_xa(folder / f"view{index + 1}.dcm", run)
             for index, run in enumerate(runs)]
    return request.param, geometry, runs, paths


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_chain_files_read_through_rle_and_the_spacing_fallback(chain_runs):
    _, geometry, runs, paths = chain_runs
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    run = read_xa(paths[0])
    np.testing.assert_array_equal(run.pixels, runs[0].stored)
    assert run.spacing_source(1) == "PixelSpacing x EstimatedRadiographicMagnificationFactor"
    np.testing.assert_allclose(run.view(1).detector_spacing_mm,
                               geometry.views[0].detector_spacing_mm, rtol=1e-6)
    assert run.intensity.relationship == "LIN" and run.r_wave_frames == ()
    assert run.frame_times_ms[1] == pytest.approx(80.0)


def test_the_2d_step_extracts_the_chain_generators_vessels(chain_runs):
    kind, _, runs, paths = chain_runs
    for run, path in zip(runs, paths):
        prepared = prepare_xa_view(path)
        number = prepared.choice.number
        assert bolus(run.options.frames)[number - 1] > 0.9  # the peak of the bolus
        truth = run.integrals[number - 1] > DEFAULT_MASK_THRESHOLD_MM
        assert _dice(prepared.extraction.mask, truth) > 0.75, kind
        assert prepared.extraction.mask[run.catheter > 0.5].mean() > 0.5  # found, as it should
        assert np.corrcoef(prepared.extraction.integral.ravel(),
                           run.integrals[number - 1].ravel())[0, 1] > 0.9


def test_bolus_and_options():
    curve = bolus(ChainOptions().frames)
    assert curve.max() <= 1.0 and curve[0] < 0.01 and np.argmax(curve) in (5, 6)
    assert bolus(1).tolist() == [1.0]
