"""A synthetic spinning LiDAR: ray-casts a simple scene, one rotation at a time.

Owns: the synthetic scene and its scan. Guarantees: the scan has the geometry of the
model it imitates (its built-in calibration's laser elevations, its firing period, so a
VLP-16 at 10 Hz casts 1,808 firings × 16 lasers = 28,928 rays, ~28,860 returns); points
come out in firing order (azimuth, then laser) as the Velodyne decoder emits them
(``SENSOR_POINT_DTYPE``, REP-103 axes: x forward, y left, z up; ``ring`` by elevation,
``laser`` the laser id; the scene below is laid out in VeloView's axes, x right, y
forward) with the ``time`` of each firing from the rotation's start; a given
``(seed, frame index)`` always produces the same cloud; everything is vectorised over all
rays of a rotation.

The scene, around a sensor mounted ``SENSOR_HEIGHT_M`` above flat ground:

    ground plane           z = -SENSOR_HEIGHT_M
    enclosing wall         a vertical cylinder of radius WALL_RADIUS_M (a courtyard), so
                           upward lasers return too
    parked boxes           a few axis-aligned boxes (cars, a kiosk)
    one moving box         a car driving along y past the sensor, 8 m/s, 1 rotation = 1 step

Returns get Gaussian range noise, quantised to the sensor's 2 mm, and a small random
dropout; ranges outside [MIN_RANGE_M, MAX_RANGE_M] give no return.
"""

from __future__ import annotations

import numpy as np

from ..pointcloud import RETURN_STRONGEST, SENSOR_POINT_DTYPE
from .calibration import default_calibration

SENSOR_HEIGHT_M = 1.8
WALL_RADIUS_M = 45.0
WALL_TOP_M = 20.0
MIN_RANGE_M = 0.5
MAX_RANGE_M = 100.0
DROPOUT = 0.002
RANGE_RESOLUTION_M = 0.002

FIRING_PERIOD_S = {"VLP-16": 55.296e-6, "HDL-32E": 46.08e-6}  # one firing of all lasers
CHANNEL_GAP_S = {"VLP-16": 2.304e-6, "HDL-32E": 1.152e-6}

# (min corner, max corner, intensity) in metres, sensor frame
PARKED_BOXES = np.array(
    [
        [4.0, 6.0, -1.8, 6.0, 10.5, -0.3],  # a car ahead, to the right
        [-7.0, -3.0, -1.8, -5.0, 1.5, -0.2],  # a van to the left
        [10.0, -12.0, -1.8, 14.0, -8.0, 1.2],  # a kiosk behind, to the right
        [-15.0, 12.0, -1.8, -13.5, 13.5, 3.0],  # a pillar
    ]
)
PARKED_INTENSITY = np.array([90.0, 70.0, 55.0, 35.0])
MOVING_BOX_SIZE = np.array([1.8, 4.5, 1.5])  # x, y, z extent
MOVING_BOX_LANE_X = -2.5
MOVING_SPEED_M_S = 8.0
MOVING_INTENSITY = 120.0
GROUND_INTENSITY = 12.0
WALL_INTENSITY = 40.0


def _box_distance(directions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Distance along each unit ray from the origin to an axis-aligned box, inf if
    missed (the slab method, one axis at a time)."""
    safe = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
    t1 = box[None, 0:3] / safe
    t2 = box[None, 3:6] / safe
    near = np.minimum(t1, t2).max(axis=1)
    far = np.maximum(t1, t2).min(axis=1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def _firing_range(box: np.ndarray, firings: int) -> tuple[int, int]:
    """The firings (start, count) whose azimuth can see the box (it must not contain the
    sensor's vertical axis): the azimuth span of its corners, widened by one firing."""
    xs, ys = box[[0, 3]], box[[1, 4]]
    corners = np.array([[x, y] for x in xs for y in ys])
    azimuth = np.arctan2(corners[:, 0], corners[:, 1])  # clockwise from +y
    centre = np.arctan2(corners[:, 0].mean(), corners[:, 1].mean())
    relative = (azimuth - centre + np.pi) % (2 * np.pi) - np.pi
    step = 2 * np.pi / firings
    start = int(np.floor((centre + relative.min()) / step)) - 1
    stop = int(np.ceil((centre + relative.max()) / step)) + 1
    return start % firings, min(stop - start + 1, firings)


class SyntheticScan:
    """The scan of one model at one rotation rate; the static part of the scene (rays,
    ground, wall, parked boxes) is ray-cast once, each rotation adds the moving car,
    noise and dropouts."""

    def __init__(self, model: str = "VLP-16", rate_hz: float = 10.0, seed: int = 0, noise_m: float = 0.01):
        if model not in FIRING_PERIOD_S:
            raise ValueError(f"no simulation for model {model!r} (have: {', '.join(FIRING_PERIOD_S)})")
        if not (isinstance(rate_hz, (int, float)) and 0 < rate_hz <= 50):
            raise ValueError(f"rotation rate must be in (0, 50] Hz, got {rate_hz!r}")
        if not noise_m >= 0:
            raise ValueError(f"range noise must be >= 0 m, got {noise_m!r}")
        self.model, self.rate_hz, self.seed, self.noise_m = model, float(rate_hz), seed, float(noise_m)
        calibration = default_calibration(model)
        self.lasers = lasers = calibration.num_lasers
        self.firings = firings = round(1.0 / (self.rate_hz * FIRING_PERIOD_S[model]))

        azimuth = np.deg2rad(np.arange(firings) * (360.0 / firings))  # clockwise from +y
        elevation = np.deg2rad(calibration.vertical_deg)
        directions = np.empty((firings, lasers, 3))
        directions[..., 0] = np.sin(azimuth)[:, None] * np.cos(elevation)[None, :]
        directions[..., 1] = np.cos(azimuth)[:, None] * np.cos(elevation)[None, :]
        directions[..., 2] = np.sin(elevation)[None, :]
        self.rays = rays = directions.reshape(-1, 3)

        with np.errstate(divide="ignore"):
            ground = np.where(rays[:, 2] < 0, -SENSOR_HEIGHT_M / rays[:, 2], np.inf)
            wall = WALL_RADIUS_M / np.hypot(rays[:, 0], rays[:, 1])
        wall = np.where(wall * rays[:, 2] <= WALL_TOP_M, wall, np.inf)
        self.static_distance = np.minimum(ground, wall)
        self.static_surface = np.where(ground <= wall, 0, 1)
        for number, box in enumerate(PARKED_BOXES):
            self._cast_box(box, 2 + number, self.static_distance, self.static_surface)
        self.surface_intensity = np.concatenate(
            [[GROUND_INTENSITY, WALL_INTENSITY], PARKED_INTENSITY, [MOVING_INTENSITY]])
        firing = np.repeat(np.arange(firings), lasers)
        self.laser = np.tile(np.arange(lasers), firings).astype(np.uint16)
        ring_of_laser = np.argsort(np.argsort(calibration.vertical_deg, kind="stable"), kind="stable").astype(np.uint16)
        self.ring = ring_of_laser[self.laser]
        self.time_s = (firing * FIRING_PERIOD_S[model] + self.laser * CHANNEL_GAP_S[model]).astype(np.float32)

    @property
    def rays_per_rotation(self) -> int:
        return self.firings * self.lasers

    def _cast_box(self, box: np.ndarray, surface_id: int, distance: np.ndarray, surface: np.ndarray) -> None:
        """Bring the box into ``distance``/``surface`` where it is the nearest surface,
        testing only the firings that can see it (a contiguous range of rays)."""
        start, count = _firing_range(box, self.firings)
        seen = ((np.arange(start, start + count) % self.firings)[:, None] * self.lasers
                + np.arange(self.lasers)[None, :]).reshape(-1)
        hit = _box_distance(self.rays[seen], box)
        closer = hit < distance[seen]
        distance[seen[closer]] = hit[closer]
        surface[seen[closer]] = surface_id

    def rotation(self, frame_index: int) -> np.ndarray:
        """Rotation number ``frame_index`` as a SENSOR_POINT_DTYPE array (same index, same cloud)."""
        rng = np.random.default_rng([self.seed, frame_index])
        distance = self.static_distance.copy()
        surface = self.static_surface.copy()
        travelled = (frame_index / self.rate_hz * MOVING_SPEED_M_S) % 60.0 - 30.0  # wraps every 60 m
        moving_min = np.array([MOVING_BOX_LANE_X, travelled, -SENSOR_HEIGHT_M])
        self._cast_box(np.concatenate([moving_min, moving_min + MOVING_BOX_SIZE]), len(self.surface_intensity) - 1,
                       distance, surface)

        if self.noise_m:
            distance += rng.normal(0.0, self.noise_m, distance.shape)
        distance = np.round(distance / RANGE_RESOLUTION_M) * RANGE_RESOLUTION_M
        returned = np.flatnonzero((distance >= MIN_RANGE_M) & (distance <= MAX_RANGE_M)
                                  & (rng.random(distance.shape) >= DROPOUT))
        points = np.empty(returned.shape[0], SENSOR_POINT_DTYPE)
        kept_distance = distance[returned]
        kept_rays = self.rays[returned]
        points["x"] = kept_rays[:, 1] * kept_distance  # REP-103 from the scene's VeloView axes
        points["y"] = -kept_rays[:, 0] * kept_distance
        points["z"] = kept_rays[:, 2] * kept_distance
        intensity = self.surface_intensity[surface[returned]] + rng.normal(0.0, 4.0, returned.shape[0])
        points["intensity"] = np.clip(np.round(intensity), 0, 255)
        points["ring"] = self.ring[returned]
        points["laser"] = self.laser[returned]
        points["return_type"] = RETURN_STRONGEST
        points["time"] = self.time_s[returned]
        return points


def simulate_rotation(model: str = "VLP-16", rate_hz: float = 10.0, frame_index: int = 0, seed: int = 0,
                      noise_m: float = 0.01) -> np.ndarray:
    """One rotation of the synthetic scene (builds the scan each call: use SyntheticScan
    to generate many)."""
    return SyntheticScan(model, rate_hz, seed, noise_m).rotation(frame_index)
