"""The point-cloud record contract: round trips, header grammar, length checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.pointcloud import POINT_DTYPE, decode_cloud, dtype_to_fields, encode_cloud, fields_to_dtype


def _cloud(n: int = 5) -> np.ndarray:
    points = np.zeros(n, POINT_DTYPE)
    points["x"] = np.arange(n)
    points["y"] = -np.arange(n)
    points["z"] = 0.5
    points["intensity"] = 7
    points["ring"] = np.arange(n) % 16
    points["time"] = np.linspace(0, 0.1, n)
    return points


def test_default_layout():
    assert dtype_to_fields(POINT_DTYPE) == "x:<f4 y:<f4 z:<f4 intensity:<f4 ring:<u2 time:<f4"
    assert POINT_DTYPE.itemsize == 22
    assert fields_to_dtype(dtype_to_fields(POINT_DTYPE)) == POINT_DTYPE


def test_round_trip_with_text_and_byte_headers():
    points = _cloud()
    value, headers = encode_cloud(points, model="VLP-16")
    assert headers == {"encoding": "pointcloud", "points": "5",
                       "fields": "x:<f4 y:<f4 z:<f4 intensity:<f4 ring:<u2 time:<f4", "model": "VLP-16"}
    assert isinstance(value, memoryview) and value.nbytes == 5 * 22
    assert value.obj is not None  # zero copy: a view of the points
    np.testing.assert_array_equal(decode_cloud(value, headers), points)
    np.testing.assert_array_equal(decode_cloud(bytes(value), {k: v.encode() for k, v in headers.items()}), points)


def test_empty_cloud():
    value, headers = encode_cloud(np.zeros(0, POINT_DTYPE))
    assert headers["points"] == "0" and len(value) == 0
    assert decode_cloud(b"", headers).shape == (0,)


def test_padded_and_strided_arrays_are_repacked():
    aligned = np.zeros(3, np.dtype([("x", "<f4"), ("flag", "u1"), ("t", "<f8")], align=True))
    aligned["x"], aligned["flag"], aligned["t"] = [1, 2, 3], [4, 5, 6], [0.1, 0.2, 0.3]
    value, headers = encode_cloud(aligned)
    assert headers["fields"] == "x:<f4 flag:|u1 t:<f8" and len(value) == 3 * 13
    decoded = decode_cloud(value, headers)
    assert decoded["flag"].tolist() == [4, 5, 6] and decoded["t"].tolist() == [0.1, 0.2, 0.3]
    strided = _cloud(10)[::3]
    np.testing.assert_array_equal(decode_cloud(*encode_cloud(strided)), strided)


_field_types = st.sampled_from(["<f4", ">f4", "<f8", "<f2", "|u1", "|i1", "<u2", ">i2", "<u4", "<i8", ">u8"])


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True),
    types=st.lists(_field_types, min_size=6, max_size=6),
    count=st.integers(0, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_any_layout(names, types, count, seed):
    dtype = np.dtype([(name, types[i]) for i, name in enumerate(names)])
    raw = np.random.default_rng(seed).integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    points = raw.view(dtype)
    value, headers = encode_cloud(points)
    decoded = decode_cloud(bytes(value), headers)
    assert decoded.dtype == dtype
    assert decoded.tobytes() == points.tobytes()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"encoding": "jpeg"}, "encoding is 'jpeg'"),
        ({"points": "-1"}, "not a non-negative integer"),
        ({"points": "five"}, "not a non-negative integer"),
        ({"points": "6"}, "describe 6 points"),
        ({"fields": ""}, "fields header is empty"),
        ({"fields": "x=<f4,y<f4"}, "not 'name=<dtype>'"),
        ({"fields": "x=<f4,x=<f4"}, "twice"),
        ({"fields": "1x=<f4"}, "not a valid field name"),
        ({"fields": "x=float"}, "not a numpy dtype string"),
        ({"fields": "x=f4"}, "explicit byte order"),
        ({"fields": "x=<f3"}, "not a numpy dtype string"),
        ({"fields": "x=<i16"}, "not a numpy dtype string"),
        ({"fields": "x=<O8"}, "not a numpy dtype string"),
        ({"fields": "x:<f4 y<f4"}, "not 'name:<dtype>'"),
        ({"fields": "x:<f4 x:<f4"}, "twice"),
        ({"fields": "x:f4"}, "explicit byte order"),
        ({"fields": b"\xff\xfe"}, "not UTF-8"),
    ],
)
def test_bad_headers_are_value_errors(change, message):
    value, headers = encode_cloud(_cloud())
    with pytest.raises(ValueError, match=message):
        decode_cloud(value, {**headers, **change})


def test_missing_header_and_short_value():
    value, headers = encode_cloud(_cloud())
    for key in ("encoding", "points", "fields"):
        with pytest.raises(ValueError, match=f"no '{key}' header"):
            decode_cloud(value, {k: v for k, v in headers.items() if k != key})
    with pytest.raises(ValueError, match="109 bytes but the headers describe 5 points"):
        decode_cloud(bytes(value)[:-1], headers)


def test_unencodable_arrays():
    with pytest.raises(ValueError, match="structured dtype"):
        encode_cloud(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        encode_cloud(np.zeros((2, 2), POINT_DTYPE))
    with pytest.raises(ValueError, match="nested or an array"):
        encode_cloud(np.zeros(2, np.dtype([("xyz", "<f4", (3,))])))
    with pytest.raises(ValueError, match="only float and integer"):
        encode_cloud(np.zeros(2, np.dtype([("name", "U4")])))


def test_sensor_layout_extends_the_default_and_old_records_still_decode():
    from drivers.pointcloud import SENSOR_POINT_DTYPE

    # the default layout is the sensor layout's prefix: a reader of x..time reads both
    assert SENSOR_POINT_DTYPE.descr[:len(POINT_DTYPE.descr)] == POINT_DTYPE.descr and SENSOR_POINT_DTYPE.itemsize == 25
    new = np.zeros(3, SENSOR_POINT_DTYPE)
    new["x"], new["laser"], new["return_type"] = [1, 2, 3], [7, 8, 9], [1, 2, 3]
    value, headers = encode_cloud(new, model="HDL-32E")
    assert headers["fields"].endswith(" laser:<u2 return_type:|u1")
    back = decode_cloud(bytes(value), headers)
    assert back["laser"].tolist() == [7, 8, 9] and back["return_type"].tolist() == [1, 2, 3]
    # a record written before the sensor layout (22-byte points, no axes header) decodes as it was
    old_headers = {"encoding": "pointcloud", "points": "2",
                   "fields": "x=<f4,y=<f4,z=<f4,intensity=<f4,ring=<u2,time=<f4",
                   "model": "VLP-16"}
    old = np.zeros(2, POINT_DTYPE)
    old["y"] = [5.0, 6.0]
    assert decode_cloud(old.tobytes(), old_headers)["y"].tolist() == [5.0, 6.0]


def test_fields_header_is_unambiguous_in_a_kcat_line_and_the_old_form_is_read():
    """kcat prints headers as ``k=v,k=v``: the fields value must hold neither ``,`` nor ``=``."""
    value, headers = encode_cloud(_cloud(), model="VLP-16")
    assert "," not in headers["fields"] and "=" not in headers["fields"]
    line = ",".join(f"{k}={v}" for k, v in headers.items())  # what kcat -f '%h' shows
    parsed = dict(item.split("=", 1) for item in line.split(","))
    np.testing.assert_array_equal(decode_cloud(value, parsed), _cloud())
    old = {**headers, "fields": "x=<f4,y=<f4,z=<f4,intensity=<f4,ring=<u2,time=<f4"}  # records written before
    np.testing.assert_array_equal(decode_cloud(value, old), _cloud())
    assert fields_to_dtype(old["fields"]) == fields_to_dtype(headers["fields"]) == POINT_DTYPE
