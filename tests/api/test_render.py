"""Bird's-eye rendering and PNG encoding (numpy only)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from drivers.pointcloud import POINT_DTYPE
from edge.api.render import birdseye, encode_png


def _cloud(points):
    cloud = np.zeros(len(points), dtype=POINT_DTYPE)
    for i, (x, y, z, intensity) in enumerate(points):
        cloud[i] = (x, y, z, intensity, 0, 0)
    return cloud


def test_orientation_forward_is_up_left_is_left():
    image = birdseye(_cloud([(20, 0, 1, 10), (0, 20, 1, 10)]), size=200, range_m=40, ring_m=0)
    lit = np.argwhere(image.max(axis=2) > 200)
    centre = 100
    # the forward point is above the centre, the left point is left of it
    assert any(r < centre - 30 and abs(c - centre) <= 3 for r, c in lit)
    assert any(c < centre - 30 and abs(r - centre) <= 3 for r, c in lit)


def test_highest_point_wins_and_colours_follow_height():
    cloud = _cloud([(10, 10, -1.5, 0), (10, 10, 2.0, 0), (-10, -10, -1.5, 0)])
    image = birdseye(cloud, size=128, range_m=20, ring_m=0)
    scale = 128 / 40  # pixels per metre; row = (range - x) * scale, col = (range - y) * scale
    high = image[int(10 * scale), int(10 * scale)]   # x=10, y=10: the 2.0 m point hides the -1.5 m one
    low = image[int(30 * scale), int(30 * scale)]    # x=-10, y=-10: ground only
    assert tuple(high) != tuple(low)
    assert high[0] > low[0] and high[2] < low[2]  # RGB turbo: blue (low) to red (high)


def test_png_round_trip():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded[:, :, ::-1], image)
    grey = rng.integers(0, 255, (5, 7), dtype=np.uint8)
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(grey), np.uint8), cv2.IMREAD_GRAYSCALE), grey)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="color"):
        birdseye(_cloud([(0, 0, 0, 0)]), color="rainbow")
    with pytest.raises(ValueError, match="'z'"):
        birdseye(np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4")]))


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]),
                  st.integers(0, 200), elements=st.tuples(finite_or_not, finite_or_not, finite_or_not, finite_or_not)),
       st.sampled_from(["height", "intensity"]))
def test_any_cloud_renders(points, color):
    image = birdseye(points, size=64, range_m=10, color=color)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
