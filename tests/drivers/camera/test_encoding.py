"""Frame payloads: JPEG/PNG/raw BGR round trips, the headers of the record contract, and
clear errors for anything that does not fit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drivers.camera.encoding import ENCODINGS, decode_frame, encode_frame
from drivers.camera.sim import SimCameraSource


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def footage_frame(shared_data):
    capture = cv2.VideoCapture(str(shared_data / "car-detection.mp4"))
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


@pytest.fixture(scope="module")
def sim_frame():
    return SimCameraSource(rate="max", limit=1).render(1.5, 45, 1_700_000_000_000_000_000)


def as_record_headers(headers):
    return {k: v.encode() for k, v in headers.items()}  # what a consumer's Record.headers holds


def test_jpeg_round_trip_within_psnr(footage_frame, sim_frame):
    for image in (footage_frame, sim_frame):
        value, headers = encode_frame(image, "jpeg", quality=90)
        h, w = image.shape[:2]
        assert headers == {"encoding": "jpeg", "width": str(w), "height": str(h)}
        assert bytes(value[:2]) == b"\xff\xd8" and len(value) < image.nbytes / 5
        decoded = decode_frame(value, as_record_headers(headers))
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        assert psnr(image, decoded) > 35


def test_jpeg_quality_trades_size(footage_frame):
    small, _ = encode_frame(footage_frame, "jpeg", quality=30)
    large, _ = encode_frame(footage_frame, "jpeg", quality=95)
    assert len(small) < len(large)


def test_png_is_lossless(footage_frame):
    value, headers = encode_frame(footage_frame, "png")
    assert headers["encoding"] == "png" and bytes(value[:4]) == b"\x89PNG"
    np.testing.assert_array_equal(decode_frame(value, headers), footage_frame)


def test_bgr8_is_a_zero_copy_view(footage_frame):
    value, headers = encode_frame(footage_frame, "bgr8")
    assert isinstance(value, memoryview) and value.nbytes == 768 * 432 * 3
    assert headers == {"encoding": "bgr8", "width": "768", "height": "432"}
    assert np.shares_memory(np.frombuffer(value, np.uint8), footage_frame)
    decoded = decode_frame(value, as_record_headers(headers))
    np.testing.assert_array_equal(decoded, footage_frame)
    assert np.shares_memory(decoded, footage_frame) and not decoded.flags.writeable
    writable = decode_frame(bytes(value), headers, copy=True)
    assert writable.flags.writeable


def test_bgr8_of_a_non_contiguous_crop(footage_frame):
    crop = footage_frame[10:110, 20:220:2]
    value, headers = encode_frame(crop, "bgr8")
    assert (headers["width"], headers["height"]) == ("100", "100")
    np.testing.assert_array_equal(decode_frame(value, headers), crop)


@settings(max_examples=30, deadline=None)
@given(image=arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))),
       encoding=st.sampled_from(["png", "bgr8"]))
def test_lossless_round_trips(image, encoding):
    value, headers = encode_frame(image, encoding)
    np.testing.assert_array_equal(decode_frame(value, headers), image)


def test_unknown_encoding_is_named(sim_frame):
    with pytest.raises(ValueError, match=r"'webp'.*jpeg, png, bgr8"):
        encode_frame(sim_frame, "webp")
    with pytest.raises(ValueError, match=r"'h264'.*jpeg, png, bgr8"):
        decode_frame(b"\x00" * 12, {"encoding": b"h264", "width": b"2", "height": b"2"})
    assert ENCODINGS == ("jpeg", "png", "bgr8")


def test_bgr8_length_must_match_the_size():
    with pytest.raises(ValueError, match=r"11 bytes does not match 2x2x3 = 12"):
        decode_frame(b"\x00" * 11, {"encoding": "bgr8", "width": "2", "height": "2"})


@pytest.mark.parametrize("headers, message", [
    ({"encoding": "bgr8", "height": "2"}, "lacks the 'width' header"),
    ({"encoding": "bgr8", "width": "two", "height": "2"}, "'width' must be a positive integer"),
    ({"encoding": "bgr8", "width": "0", "height": "2"}, "'width' must be a positive integer"),
    ({"width": "2", "height": "2"}, "lacks the 'encoding' header"),
])
def test_bad_headers(headers, message):
    with pytest.raises(ValueError, match=message):
        decode_frame(b"\x00" * 12, headers)


def test_undecodable_and_mislabelled_images(sim_frame):
    with pytest.raises(ValueError, match="could not decode the jpeg frame"):
        decode_frame(b"not a jpeg at all", {"encoding": "jpeg", "width": "2", "height": "2"})
    with pytest.raises(ValueError, match="empty png frame"):
        decode_frame(b"", {"encoding": "png", "width": "2", "height": "2"})
    value, headers = encode_frame(sim_frame, "jpeg")
    with pytest.raises(ValueError, match="decodes to 1280x720, but its headers say 640x720"):
        decode_frame(value, {**headers, "width": "640"})


def test_bad_images_and_options(sim_frame):
    for bad in (sim_frame[:, :, 0], sim_frame.astype(np.float32), sim_frame[:0], [[1, 2, 3]]):
        with pytest.raises(ValueError, match=r"HxWx3 uint8|empty"):
            encode_frame(bad, "jpeg")
    for quality in (0, 101, 90.5):
        with pytest.raises(ValueError, match="JPEG quality"):
            encode_frame(sim_frame, "jpeg", quality=quality)
    with pytest.raises(ValueError, match="PNG compression"):
        encode_frame(sim_frame, "png", png_compression=10)
