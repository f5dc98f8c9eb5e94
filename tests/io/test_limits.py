"""Memory limits before allocation: geometries and image headers whose arrays would not
fit are one-line errors naming the field (sdfcar.io.limits)."""

from dataclasses import replace

import numpy as np
import pytest

from sdfcar.errors import InputError
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.io import limits
from sdfcar.io.images import read_view, write_view
from sdfcar.io.limits import LIMIT_VARIABLE, check_memory, memory_estimate

from conftest import SMALL_GEOMETRY


def test_a_huge_volume_is_refused_naming_the_field(monkeypatch):
    monkeypatch.delenv(LIMIT_VARIABLE, raising=False)
    huge = replace(SMALL_GEOMETRY, volume=VolumeGrid((4000, 4000, 4000), (0.1, 0.1, 0.1)))
    with pytest.raises(InputError) as caught:
        check_memory(huge, "case/geometry.json", dense=False)
    message = str(caught.value)
    assert message.startswith("case/geometry.json: volume.shape [4000, 4000, 4000] needs "
                              "about 3814.") and "GiB available (MemAvailable" in message
    check_memory(SMALL_GEOMETRY, "case/geometry.json", dense=True)


def test_huge_detectors_are_refused_naming_the_view(monkeypatch):
    monkeypatch.setenv(LIMIT_VARIABLE, "64")
    views = (SMALL_GEOMETRY.views[0],
             replace(SMALL_GEOMETRY.views[1], detector_shape=(100000, 100000)))
    with pytest.raises(InputError, match=r"g.json: views\[1\].detector_shape \[100000, "
                                         r"100000\] needs about 447.\d GiB .* than the 64.0 "
                                         f"GiB available \\({LIMIT_VARIABLE}\\)"):
        check_memory(CaseGeometry(views, SMALL_GEOMETRY.volume), "g.json", dense=True)


def test_the_dense_path_needs_more_per_voxel():
    fast, dense = (memory_estimate(SMALL_GEOMETRY, d)["volume.shape"] for d in (False, True))
    assert fast[0] == dense[0] == [48, 48, 48] and dense[1] > fast[1] > 48 ** 3


@pytest.mark.parametrize("text", ["lots", "0", "-1", "nan"])
def test_a_bad_limit_is_named(monkeypatch, text):
    monkeypatch.setenv(LIMIT_VARIABLE, text)
    with pytest.raises(InputError, match=f"{LIMIT_VARIABLE}: expected a positive number"):
        check_memory(SMALL_GEOMETRY, "g.json", dense=False)


def test_without_meminfo_or_limit_nothing_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(LIMIT_VARIABLE, raising=False)
    monkeypatch.setattr(limits, "MEMINFO", tmp_path / "none")
    assert limits.available_bytes() is None
    check_memory(replace(SMALL_GEOMETRY, volume=VolumeGrid((4000,) * 3)), "g.json", True)


def test_an_image_header_too_large_for_memory_is_refused_before_reading(monkeypatch, tmp_path):
    path = write_view(tmp_path / "view1.nrrd", np.ones((64, 64), np.float32), (1.0, 1.0))
    assert read_view(path).shape == (64, 64)
    monkeypatch.setenv(LIMIT_VARIABLE, "0.00001")  # about 10 kB: less than 64 x 64 x 8 bytes
    with pytest.raises(InputError, match=r"view1.nrrd: an image of size \[64, 64\] needs"):
        read_view(path)
