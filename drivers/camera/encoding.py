"""Camera frame payloads of the record contract: JPEG, PNG or raw BGR pixels.

Owns: how a camera image becomes a record value and back.

- ``encode_frame(image, encoding, quality)`` returns ``(value, headers)``: the record value
  and the payload's headers ``encoding``, ``width``, ``height`` as UTF-8 text strings
  (the runtime adds ``sensor``, ``seq`` and ``capture_ns``). ``jpeg`` honours ``quality``
  (1-100); ``png`` is lossless (``png_compression`` 0-9, default 1: fast); ``bgr8`` is the
  raw pixels, row-major HxWx3 bytes, as a zero-copy ``memoryview`` of the image (a copy
  is made only when the image is not C-contiguous, e.g. a crop). The view keeps the
  image alive; do not write to the image while the value is in use. JPEG/PNG values are
  ``memoryview``s of OpenCV's output buffer (no copy either).
- ``decode_frame(value, headers)`` rebuilds the HxWx3 uint8 BGR image. Headers may be
  ``str`` or ``bytes`` (as a consumer's ``Record.headers`` holds them). ``bgr8`` is a
  zero-copy, read-only ``np.frombuffer`` view (``copy=True`` for a writable array),
  after checking that the value is exactly width x height x 3 bytes. JPEG/PNG go through
  ``cv2.imdecode``, and the decoded size must match the width/height headers.

Everything wrong raises ValueError with what was wrong: an unknown encoding (naming the
allowed ones), an image that is not HxWx3 uint8, a quality out of range, missing or bad
headers, a length that does not match, bytes that do not decode.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from broker.base.names import IMAGE_ENCODINGS as ENCODINGS

HeaderValue = str | bytes | bytearray | memoryview


def _check_encoding(encoding: object) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown camera encoding {encoding!r} (allowed: {', '.join(ENCODINGS)})")
    return encoding


def _check_int_option(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
    return int(value)


def encode_frame(
    image: np.ndarray,
    encoding: str = "jpeg",
    quality: int = 90,
    *,
    png_compression: int = 1,
) -> tuple[bytes | memoryview, dict[str, str]]:
    """The record value and payload headers of a BGR image (see module doc)."""
    _check_encoding(encoding)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"camera frame must be an HxWx3 uint8 BGR array, not shape {shape} dtype {dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"camera frame is empty ({width}x{height})")
    headers = {"encoding": encoding, "width": str(width), "height": str(height)}
    if encoding == "bgr8":
        return np.ascontiguousarray(image).data.cast("B"), headers
    if encoding == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, _check_int_option("JPEG quality", quality, 1, 100)]
        ok, buffer = cv2.imencode(".jpg", image, params)
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, _check_int_option("PNG compression", png_compression, 0, 9)]
        ok, buffer = cv2.imencode(".png", image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {width}x{height} frame as {encoding}")
    return buffer.data.cast("B"), headers


def _header_text(headers: Mapping[str, HeaderValue], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise ValueError(f"camera record lacks the {name!r} header (has: {', '.join(sorted(headers)) or 'none'})")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"camera record header {name!r} is not UTF-8 text: {bytes(raw)[:32]!r}") from None
    return str(raw)


def _header_side(headers: Mapping[str, HeaderValue], name: str) -> int:
    text = _header_text(headers, name)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"camera record header {name!r} must be a positive integer, not {text!r}")
    return value


def decode_frame(value: bytes | bytearray | memoryview, headers: Mapping[str, HeaderValue], *,
                 copy: bool = False) -> np.ndarray:
    """The HxWx3 uint8 BGR image of a camera record (see module doc)."""
    encoding = _check_encoding(_header_text(headers, "encoding"))
    width, height = _header_side(headers, "width"), _header_side(headers, "height")
    if encoding == "bgr8":
        size = memoryview(value).nbytes
        expected = width * height * 3
        if size != expected:
            raise ValueError(f"bgr8 frame of {size} bytes does not match {width}x{height}x3 = {expected} bytes")
        view = np.frombuffer(value, dtype=np.uint8).reshape(height, width, 3)
        if copy:
            return view.copy()
        view.flags.writeable = False  # a view of the record's buffer: never write through it
        return view
    buffer = np.frombuffer(value, dtype=np.uint8)
    if buffer.size == 0:
        raise ValueError(f"empty {encoding} frame")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ValueError(f"could not decode the {encoding} frame ({buffer.size} bytes): {exc}") from None
    if image is None:
        raise ValueError(f"could not decode the {encoding} frame ({buffer.size} bytes): not valid {encoding} data")
    if image.shape[:2] != (height, width):
        raise ValueError(f"{encoding} frame decodes to {image.shape[1]}x{image.shape[0]}, "
                         f"but its headers say {width}x{height}")
    return image
