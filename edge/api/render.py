"""Bird's-eye view of a point cloud: top-down, coloured by height or intensity, numpy only.

``birdseye(points, ...)`` returns an RGB image (H×W×3 uint8); ``encode_png`` packs it with
zlib (no OpenCV in this path). Guarantees:
- Vectorised: no per-point Python loop. Each pixel shows the highest point that falls in
  it (``np.maximum.at`` on a height grid), so obstacles are not hidden under the ground.
- Sensor frame conventions: x forward (up in the image), y left (left in the image),
  z up. Points outside ``range_m`` of the sensor, or with a non-finite coordinate, are
  skipped; an empty or all-invalid cloud renders the grid alone.
- Range rings every ``ring_m`` metres and a marker at the sensor, so distances read off.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

BACKGROUND = np.array([14, 17, 22], dtype=np.uint8)
RING_COLOUR = np.array([48, 56, 68], dtype=np.uint8)
AXIS_COLOUR = np.array([70, 80, 96], dtype=np.uint8)
SENSOR_COLOUR = np.array([255, 255, 255], dtype=np.uint8)

# Turbo colour map (Google, Apache-2.0), 9 control points, interpolated linearly.
_TURBO = np.array([
    [48, 18, 59], [70, 107, 227], [40, 187, 236], [50, 241, 152], [164, 252, 60],
    [237, 208, 58], [251, 128, 34], [209, 58, 4], [122, 4, 3],
], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 (turbo)."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_TURBO) - 1)
    lo = np.floor(v).astype(np.intp)
    hi = np.minimum(lo + 1, len(_TURBO) - 1)
    frac = (v - lo)[..., None]
    rgb: np.ndarray = (_TURBO[lo] * (1 - frac) + _TURBO[hi] * frac).astype(np.uint8)
    return rgb


@lru_cache(maxsize=8)
def _grid_cached(size: int, range_m: float, ring_m: float) -> np.ndarray:
    image = _draw_grid(size, range_m, ring_m)
    image.flags.writeable = False
    return image


def _grid(size: int, range_m: float, ring_m: float) -> np.ndarray:
    """A fresh copy of the background with range rings and axes (drawn once per geometry)."""
    return _grid_cached(size, float(range_m), float(ring_m)).copy()


def _draw_grid(size: int, range_m: float, ring_m: float) -> np.ndarray:
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    metres_per_px = 2 * range_m / size
    dist = np.hypot(yy - centre, xx - centre) * metres_per_px
    if ring_m > 0:
        phase = np.abs(dist - np.round(dist / ring_m) * ring_m)
        image[(phase < metres_per_px * 0.6) & (dist > ring_m / 2)] = RING_COLOUR
    axis = (np.abs(yy - centre) < 0.6) | (np.abs(xx - centre) < 0.6)
    image[axis] = AXIS_COLOUR
    return image


def birdseye(points: np.ndarray, *, size: int = 512, range_m: float = 40.0, color: str = "height",
             ring_m: float = 10.0, z_range: tuple[float, float] | None = None) -> np.ndarray:
    """Render a structured point array (fields x, y, z and, for ``color="intensity"``,
    intensity) as a top-down RGB image ``size`` pixels square covering ±``range_m``."""
    if color not in ("height", "intensity"):
        raise ValueError(f"color must be 'height' or 'intensity', not {color!r}")
    if size < 16 or range_m <= 0:
        raise ValueError("size must be >= 16 and range_m > 0")
    names = points.dtype.names or ()
    for field in ("x", "y", "z") + (("intensity",) if color == "intensity" else ()):
        if field not in names:
            raise ValueError(f"point cloud has no {field!r} field (fields: {', '.join(names) or 'none'})")
    image = _grid(size, range_m, ring_m)
    x = points["x"].astype(np.float32, copy=False)
    y = points["y"].astype(np.float32, copy=False)
    z = points["z"].astype(np.float32, copy=False)
    value = z if color == "height" else points["intensity"].astype(np.float32, copy=False)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z) & np.isfinite(value)
    ok &= (np.abs(x) < range_m) & (np.abs(y) < range_m)
    if np.any(ok):
        x, y, z, value = x[ok], y[ok], z[ok], value[ok]
        scale = size / (2 * range_m)
        row = np.clip(((range_m - x) * scale).astype(np.intp), 0, size - 1)   # forward is up
        col = np.clip(((range_m - y) * scale).astype(np.intp), 0, size - 1)   # left is left
        flat = row * size + col
        # the highest point per pixel wins: its height (or intensity) colours the pixel
        top = np.full(size * size, -np.inf, dtype=np.float32)
        np.maximum.at(top, flat, z)
        hit = np.isfinite(top)
        if color == "height":
            lo, hi = z_range if z_range is not None else (float(np.percentile(z, 2)), float(np.percentile(z, 98)))
            shade = top[hit]
        else:
            winner = np.full(size * size, -np.inf, dtype=np.float32)
            is_top = z >= top[flat]
            np.maximum.at(winner, flat[is_top], value[is_top])
            shade = winner[hit]
            lo, hi = 0.0, max(float(np.percentile(value, 99)), 1e-6)
        # start the map above its darkest blues so ground points stand out from the background
        norm = 0.12 + 0.88 * np.clip((shade - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        image.reshape(-1, 3)[np.flatnonzero(hit)] = colormap(norm)
    c = size // 2
    image[max(c - 2, 0):c + 3, max(c - 2, 0):c + 3] = SENSOR_COLOUR
    return image


def encode_png(image: np.ndarray, *, level: int = 3) -> bytes:
    """PNG (8-bit RGB or grey) with zlib, filter type 0 per row."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("encode_png needs an HxW or HxWx3 uint8 array")
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3):
        raise ValueError("encode_png supports 1 or 3 channels")
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    raw = np.empty((height, width * channels + 1), dtype=np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr),
                     chunk(b"IDAT", zlib.compress(raw.tobytes(), level)), chunk(b"IEND", b"")])
