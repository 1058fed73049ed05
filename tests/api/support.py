"""Helpers for the API tests: record-contract feeds and an in-process uvicorn server.

``SensorFeed`` publishes, through the client library's Producer, what the drivers publish:
JPEG camera frames and packed point clouds with the record-contract headers, and JSON
health records on ``_health``. ``ApiServer`` runs ``create_app`` under a real uvicorn on a
free loopback port in a thread, so requests go through HTTP and WebSocket for real.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from broker.client import Admin, Producer
from drivers.pointcloud import POINT_DTYPE, encode_cloud

CAMERA_SIZE = (320, 180)


def camera_frame(name: str, seq: int, size: tuple[int, int] = CAMERA_SIZE) -> bytes:
    """A JPEG with a moving bar, the camera name and the sequence number drawn in."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = np.linspace(40, 120, width, dtype=np.uint8)[None, :]
    image[:, :, 1] = np.linspace(30, 90, height, dtype=np.uint8)[:, None]
    x = (seq * 7) % width
    image[:, max(0, x - 6):x + 6] = (0, 200, 255)
    scale = width / 400
    cv2.putText(image, f"{name} #{seq}", (int(10 * scale), height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                (255, 255, 255), max(1, int(2 * scale)))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def point_cloud(seq: int, n: int = 6000) -> np.ndarray:
    """A ground disc and a few boxes around the sensor, rotating slowly with ``seq``."""
    rng = np.random.default_rng(seq)
    cloud = np.zeros(n, dtype=POINT_DTYPE)
    r = rng.uniform(2, 38, n)
    a = rng.uniform(0, 2 * np.pi, n)
    cloud["x"], cloud["y"] = r * np.cos(a), r * np.sin(a)
    cloud["z"] = -1.7 + rng.normal(0, 0.03, n)
    boxes = n // 4
    centres = np.array([[10, 4], [-6, -8], [15, -12], [-12, 10]], dtype=np.float32)
    turn = seq * 0.05
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]], dtype=np.float32)
    pick = centres[rng.integers(0, len(centres), boxes)] @ rot.T
    cloud["x"][:boxes] = pick[:, 0] + rng.uniform(-1.2, 1.2, boxes)
    cloud["y"][:boxes] = pick[:, 1] + rng.uniform(-1.2, 1.2, boxes)
    cloud["z"][:boxes] = rng.uniform(-1.7, 0.8, boxes)
    cloud["intensity"] = rng.uniform(0, 255, n)
    cloud["ring"] = rng.integers(0, 16, n)
    cloud["time"] = a / (2 * np.pi) * 0.1
    return cloud


def camera_headers(name: str, seq: int, capture_ns: int, size: tuple[int, int] = CAMERA_SIZE) -> dict[str, str]:
    return {"sensor": name, "seq": str(seq), "capture_ns": str(capture_ns), "encoding": "jpeg",
            "width": str(size[0]), "height": str(size[1])}


def publish_camera(producer: Producer, topic: str, name: str, seq: int, size: tuple[int, int] = CAMERA_SIZE):
    now = time.time_ns()
    return producer.send(topic, camera_frame(name, seq, size), key=name.encode(),
                         headers=camera_headers(name, seq, now, size), timestamp_ns=now)


def publish_cloud(producer: Producer, topic: str, name: str, seq: int):
    now = time.time_ns()
    value, headers = encode_cloud(point_cloud(seq), model="sim")
    headers.update(sensor=name, seq=str(seq), capture_ns=str(now))
    return producer.send(topic, bytes(value), key=name.encode(), headers=headers, timestamp_ns=now)


def publish_health(producer: Producer, name: str, kind: str, topic: str, seq: int, rate_hz: float):
    body = {"sensor": name, "kind": kind, "topic": topic, "state": "running", "captured": seq + 1,
            "published": seq + 1, "acknowledged": seq, "dropped": {"queue_full": 0, "broker": 0},
            "rate_hz": rate_hz, "queue_depth": 0, "queue_size": 8, "last_capture_ns": time.time_ns(),
            "time_ns": time.time_ns()}
    return producer.send("_health", json.dumps(body).encode(), key=name.encode(),
                         headers={"sensor": name, "encoding": "json"})


def publish_mirror_health(producer: Producer, topics: list[str], seq: int):
    """A mirror status record as the dashboard expects it (link, throughput, lag per partition)."""
    body = {"state": "running", "link": "up", "shipped_records": seq * len(topics), "bytes_per_s": 2.5e6,
            "lag": [{"topic": t, "partition": 0, "records": 3 + i, "bytes": 250_000 * (3 + i),
                     "oldest_age_s": 0.4 + i / 10}
                    for i, t in enumerate(topics)],
            "time_ns": time.time_ns()}
    return producer.send("_health", json.dumps(body).encode(), key=b"mirror",
                         headers={"sensor": "mirror", "encoding": "json"})


class SensorFeed:
    """A thread publishing ``cameras`` camera topics at ``fps`` (JPEG frames of ``size``) and
    one LiDAR at 2 Hz, plus a health record per sensor every second."""

    def __init__(self, endpoint: str, cameras: list[str], lidar: str | None = "top", fps: float = 10.0,
                 size: tuple[int, int] = CAMERA_SIZE, mirror: bool = False):
        self.size = size
        self.mirror = mirror
        self.endpoint = endpoint
        self.cameras = cameras
        self.lidar = lidar
        self.fps = fps
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-feed", daemon=True)
        self.producer = Producer(endpoint, linger_ms=2)
        self.error: BaseException | None = None

    def start(self, warmup_frames: int = 2) -> SensorFeed:
        with Admin(self.endpoint) as admin:
            for cam in self.cameras:
                admin.create_topic(f"camera.{cam}", if_not_exists=True)
            if self.lidar:
                admin.create_topic(f"lidar.{self.lidar}", config={"codec": "zstd"}, if_not_exists=True)
            admin.create_topic("_health", if_not_exists=True)
        for _ in range(warmup_frames):
            self.step()
        self.producer.flush(10)
        self._thread.start()
        return self

    def step(self) -> None:
        seq = self.seq
        for cam in self.cameras:
            publish_camera(self.producer, f"camera.{cam}", cam, seq, self.size)
        if self.lidar and seq % max(1, int(self.fps / 2)) == 0:
            publish_cloud(self.producer, f"lidar.{self.lidar}", self.lidar, seq)
        if seq % max(1, int(self.fps)) == 0:
            for cam in self.cameras:
                publish_health(self.producer, cam, "camera", f"camera.{cam}", seq, self.fps)
            if self.lidar:
                publish_health(self.producer, self.lidar, "lidar", f"lidar.{self.lidar}", seq, 2.0)
            if self.mirror:
                publish_mirror_health(self.producer, [f"camera.{c}" for c in self.cameras[:3]], seq)
        self.seq += 1

    def _run(self) -> None:
        try:
            while not self._stop.wait(1.0 / self.fps):
                self.step()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.producer.close()
        if self.error is not None:
            raise self.error


class ApiServer:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        import uvicorn

        self.app = app
        self.config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False,
                                     lifespan="on", ws="websockets-sansio", log_config=None,
                                     timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.port = 0

    def start(self, timeout: float = 15.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)


def app_config(data_dir: Path, endpoint: str, cameras: list[str], lidar: str | None = "top"):
    """An AppConfig like the one ``edge up`` would run with, pointed at a test broker."""
    from edge.config import parse_config

    data: dict[str, Any] = {
        "broker": {"data_dir": str(data_dir), "endpoint": endpoint,
                   "disk_guard": {"min_free": "16MiB", "critical_free": "8MiB"}},
        "cameras": [{"name": c, "fps": 10, "width": CAMERA_SIZE[0], "height": CAMERA_SIZE[1]} for c in cameras],
        "lidars": [{"name": lidar}] if lidar else [],
    }
    return parse_config(data, data_dir.parent / "edge-test.toml")
