"""Corrupt files are one-line errors naming the file: truncated or damaged gzip streams,
NIfTI files shorter than their header, truncated DICOM pixel data (sdfcar.io.integrity,
sdfcar.xa.dicom)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid
from sdfcar.io.images import read_view, read_volume, write_view, write_volume
from sdfcar.synthetic.xa import CineOptions, reference_geometry, simulate_run, write_xa
from sdfcar.xa import read_xa

REAL_XA = Path(__file__).resolve().parents[3] / "shared" / "real-xa"
GRID = VolumeGrid((16, 16, 16), (1.0, 1.0, 1.0))


def _truncated(path: Path, fraction: float, name: str) -> Path:
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[:int(len(data) * fraction)])
    return out


def _one_line_error(read, path: Path, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


@pytest.fixture
def volume_file(tmp_path):
    values = np.random.default_rng(0).random(GRID.shape).astype(np.float32)
    return write_volume(tmp_path / "v.nii.gz", values, GRID)


def test_a_truncated_gzip_stream_is_refused(volume_file):
    assert read_volume(volume_file)[0].shape == GRID.shape
    _one_line_error(read_volume, _truncated(volume_file, 0.6, "cut.nii.gz"),
                    "corrupt or truncated gzip data")


def test_a_damaged_gzip_checksum_is_refused(volume_file):
    data = bytearray(volume_file.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 of the trailer
    damaged = volume_file.with_name("crc.nii.gz")
    damaged.write_bytes(bytes(data))
    _one_line_error(read_volume, damaged, "CRC check failed")


def test_nifti_data_shorter_than_its_header_is_refused(volume_file, tmp_path):
    raw = gzip.decompress(volume_file.read_bytes())
    short = raw[:len(raw) - 1000]
    (tmp_path / "short.nii").write_bytes(short)
    _one_line_error(read_volume, tmp_path / "short.nii", "truncated: ")
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(short))  # a sound gzip stream
    _one_line_error(read_volume, tmp_path / "short.nii.gz",
                    f"{len(short)} bytes of NIfTI data where its header describes {len(raw)}")


def test_a_truncated_view_is_refused(tmp_path):
    view = write_view(tmp_path / "view1.nii.gz", np.ones((64, 48), np.float32), (0.5, 0.5))
    assert read_view(view).shape == (64, 48)
    _one_line_error(read_view, _truncated(view, 0.6, "view2.nii.gz"), "gzip")


def test_truncated_uncompressed_dicom_pixel_data_is_refused(tmp_path):
    synthetic = simulate_run(np.zeros((64, 64)), reference_geometry(64).views[0],
                             CineOptions(frames=3), seed=0)
    path = write_xa(tmp_path / "run.dcm", synthetic)
    assert read_xa(path).pixels.shape == (3, 64, 64)
    _one_line_error(read_xa, _truncated(path, 0.9, "cut.dcm"),
                    "pixel data truncated: ")


@pytest.mark.skipif(not REAL_XA.is_dir(), reason=f"{REAL_XA} not present")
def test_a_truncated_jpeg_lossless_run_is_refused(tmp_path):
    _one_line_error(read_xa, _truncated(REAL_XA / "IM6.dcm", 0.6, "cut.dcm"),
                    "truncated file")
