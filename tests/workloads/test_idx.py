import gzip
import struct

import numpy as np
import pytest

from descentlab.workloads import IdxError, read_idx, write_idx


def raw_idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """IDX bytes written by hand (independently of write_idx)."""
    big = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_byte]
    return (bytes((0, 0, type_byte, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(big).tobytes())


def test_reads_what_a_hand_writer_wrote(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(raw_idx(images))
    got = read_idx(path, dtype=0x08, ndim=3)
    assert got.dtype == np.uint8 and np.array_equal(got, images)

    gz = tmp_path / "images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw_idx(images)))
    assert np.array_equal(read_idx(gz), images)

    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    (tmp_path / "f").write_bytes(raw_idx(floats, 0x0D))
    assert np.array_equal(read_idx(tmp_path / "f"), floats)
    shorts = np.array([-300, 2, 1000], dtype=np.int16)
    (tmp_path / "s").write_bytes(raw_idx(shorts, 0x0B))
    assert np.array_equal(read_idx(tmp_path / "s"), shorts)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_round_trip(tmp_path, suffix, dtype):
    a = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", a)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, a)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("magic", [b"\x00\x00\x07\x03", b"\x01\x00\x08\x03", b"PK\x03\x04"])
def test_bad_magic_number(tmp_path, magic):
    path = tmp_path / "bad"
    path.write_bytes(magic + struct.pack(">3I", 1, 2, 2) + bytes(4))
    with pytest.raises(IdxError, match=f"{path}: not an IDX file: bad magic number 0x{magic.hex()}"):
        read_idx(path)


def test_truncated_and_trailing_bytes(tmp_path):
    data = raw_idx(np.zeros((5, 4, 4), dtype=np.uint8))
    path = tmp_path / "t"
    path.write_bytes(data[:-7])
    truncated = r"truncated IDX file: expected 80 bytes of data for shape \(5, 4, 4\), found 73"
    with pytest.raises(IdxError, match=truncated):
        read_idx(path)
    path.write_bytes(data[:10])
    with pytest.raises(IdxError, match="truncated IDX file: expected 12 bytes of dimensions, found 6"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(IdxError, match="expected 4 bytes of magic number, found 2"):
        read_idx(path)
    path.write_bytes(data + b"\x00")
    with pytest.raises(IdxError, match="trailing bytes"):
        read_idx(path)
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(data)[:-12])
    with pytest.raises(IdxError, match=str(gz)):
        read_idx(gz)


def test_expected_type_and_dimensions(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(3, dtype=np.uint8))
    with pytest.raises(IdxError, match="has 1 dimension"):
        read_idx(path, ndim=3)
    with pytest.raises(IdxError, match="type byte is 0x08, expected 0x0D"):
        read_idx(path, dtype=0x0D)


def test_absurd_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 60000, 60000))
    with pytest.raises(IdxError, match="more than the limit"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="no such file"):
        read_idx(tmp_path / "nope")
