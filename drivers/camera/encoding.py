"""Camera frame payloads of the record contract: JPEG, PNG or raw BGR pixels.

``encode_frame`` returns the record value and the headers ``encoding``, ``width``,
``height`` (UTF-8 text); ``decode_frame`` rebuilds the BGR image from a value and its
headers, checking that a raw frame's length matches its size. ``bgr8`` values are a
zero-copy view of the image's contiguous pixel buffer.
"""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

ENCODINGS = ("jpeg", "png", "bgr8")


def encode_frame(image: np.ndarray, encoding: str = "jpeg", quality: int = 90) -> tuple[memoryview | bytes, dict[str, str]]:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown camera encoding {encoding!r} (allowed: {', '.join(ENCODINGS)})")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}")
    height, width = image.shape[:2]
    headers = {"encoding": encoding, "width": str(width), "height": str(height)}
    if encoding == "bgr8":
        return memoryview(np.ascontiguousarray(image)).cast("B"), headers
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {width}x{height} frame as {encoding}")
    return memoryview(buf).cast("B"), headers


def _text(headers: Mapping[str, bytes | str], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise ValueError(f"camera record lacks the {name!r} header")
    return raw.decode() if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw)


def decode_frame(value, headers: Mapping[str, bytes | str]) -> np.ndarray:
    encoding = _text(headers, "encoding")
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown camera encoding {encoding!r} (allowed: {', '.join(ENCODINGS)})")
    if encoding == "bgr8":
        width, height = int(_text(headers, "width")), int(_text(headers, "height"))
        if len(value) != width * height * 3:
            raise ValueError(f"bgr8 frame of {len(value)} bytes does not match {width}x{height}x3")
        return np.frombuffer(value, dtype=np.uint8).reshape(height, width, 3)
    image = cv2.imdecode(np.frombuffer(value, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not decode the {encoding} frame ({len(value)} bytes)")
    return image
