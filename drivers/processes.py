"""Entry points of the driver processes: a camera or a LiDAR, from its config entry.

Each wires a source (drivers/camera, drivers/lidar) to the shared runtime
(drivers/runtime.py) and the client library's Producer, speaks the systemd notify
protocol, and returns the process exit code (0: stopped or finite source done; 1: the
source could not be read at all).

File sources are finite and a missing file is fatal (exit 1 with the reason); live
sources (devices, streams, UDP) are retried with backoff forever, since a sensor plugged in
later must be picked up without a restart.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from broker.base import sdnotify
from broker.client import Producer
from broker.logs import log_event

from .continuity import GapCallback
from .runtime import DriverRuntime, Encoder, OverloadPolicy, Sample, SensorError

if TYPE_CHECKING:  # the sensor packages load only in the driver that runs them
    from .lidar.frame import LidarFrame

logger = logging.getLogger("drivers")


FILE_BLOCK_TIMEOUT_S = 300.0  # a file source waits this long for a stalled broker before a frame counts as dropped


def _producer(endpoint: str, codec: str = "none", *, live: bool = True) -> Producer:
    # Real-time data: fail fast when the broker is slow or down (the runtime counts drops).
    # A file played as fast as possible is not live: wait for buffer space instead of dropping.
    return Producer(endpoint, linger_ms=2, max_batch_bytes=8 * 1024 * 1024, acks="written",
                    on_full="fail" if live else "block", block_timeout_s=FILE_BLOCK_TIMEOUT_S,
                    buffer_bytes=128 * 1024 * 1024, request_timeout_s=5.0, codec=codec)


def _is_file_source(source: str) -> bool:
    if source.startswith(("pcap:", "pcd-dir:")):
        return True
    live_prefixes = ("/dev/", "rtsp://", "rtsps://", "http://", "https://", "udp://")
    return not (source == "sim" or source.isdigit() or source.startswith(live_prefixes))


def _paced_by_broker(sensor: Any) -> bool:
    """A file played "as fast as possible": nothing is live, the broker sets the pace."""
    return _is_file_source(sensor.source) and sensor.rate == "max"


def _overload_policy(sensor: Any) -> OverloadPolicy:
    # Paced by the broker, not by a sensor: the queue and the producer wait, nothing is dropped.
    policy: OverloadPolicy = "block" if _paced_by_broker(sensor) else sensor.overload
    return policy


def _run(runtime: DriverRuntime, open_source: Callable[[], Iterable[Sample]], *, finite: bool) -> int:
    runtime.install_signal_handlers()
    sdnotify.ready(f"{runtime.kind} {runtime.name} -> {runtime.topic}")
    last = {"t": time.monotonic()}
    watchdog = sdnotify.Watchdog(alive=lambda: runtime.stopping or runtime.counters.state != "running"
                                 or time.monotonic() - last["t"] < 30).start()

    def tracked() -> Iterator[Sample]:
        for sample in open_source():
            last["t"] = time.monotonic()
            yield sample

    try:
        code = runtime.run(tracked, finite=finite)
    finally:
        watchdog.stop()
        runtime.producer.close(timeout=5.0)
    c = runtime.counters
    log_event(logger, logging.INFO, "driver_stopped", sensor=runtime.name, captured=c.captured,
              published=c.published, acknowledged=c.acknowledged, dropped=sum(c.dropped.values()), code=code)
    return code


def _nominal_hz(rate: Any) -> float | None:
    try:
        return float(rate) or None
    except (TypeError, ValueError):
        return None  # "recorded", "max": no nominal rate


def run_camera(camera: Any, endpoint: str, *, on_gap: GapCallback | None = None,
               on_clock_step: GapCallback | None = None) -> int:
    """Run a camera driver for a ``CameraConfig`` until SIGTERM or the file ends."""
    from .camera.encoding import encode_frame
    from .camera.sources import CameraSourceError, open_camera_source

    if _is_file_source(camera.source) and not os.path.exists(camera.source):
        print(f"camera {camera.name}: video file {camera.source!r} not found", file=sys.stderr)
        return 1

    passthrough = camera.encoding == "passthrough"  # record the camera's own compressed frames

    def open_source() -> Iterator[Sample]:
        try:
            frames = open_camera_source(camera.source, fps=camera.fps, width=camera.width, height=camera.height,
                                        rate=camera.rate, loop=camera.loop, keep_timestamps=camera.keep_timestamps,
                                        passthrough=passthrough)
            for frame in frames:
                yield Sample(frame.capture_ns, frame if passthrough else frame.image)
        except CameraSourceError as exc:
            raise SensorError(str(exc)) from None

    encode: Encoder
    if passthrough:
        from .camera.passthrough import encode_passthrough
        encode = encode_passthrough
    else:
        def encode_image(image: Any) -> tuple[bytes | memoryview, dict[str, str]]:
            return encode_frame(image, camera.encoding, camera.quality)
        encode = encode_image

    runtime = DriverRuntime(
        name=camera.name, kind="camera", topic=camera.resolved_topic(),
        producer=_producer(endpoint, live=not _paced_by_broker(camera)),
        encode=encode, queue_size=camera.queue_size, policy=_overload_policy(camera),
        extra_headers=_frame_headers(camera),
        nominal_hz=camera.fps or _nominal_hz(camera.rate), on_gap=on_gap, on_clock_step=on_clock_step,
    )
    return _run(runtime, open_source, finite=_is_file_source(camera.source) and not camera.loop)


def _frame_headers(sensor: Any) -> dict[str, str]:
    """The sensor's frame id (its name) and, when configured, its mounting on the vehicle
    (JSON, see edge/config.py MountingConfig): what export needs to place its data."""
    headers = {"frame": sensor.name}
    if getattr(sensor, "mounting", None) is not None:
        headers["mounting"] = sensor.mounting.header()
    return headers


def run_lidar(lidar: Any, endpoint: str, *, on_gap: GapCallback | None = None,
              on_clock_step: GapCallback | None = None) -> int:
    """Run a LiDAR driver for a ``LidarConfig`` until SIGTERM or the capture ends."""
    from .lidar.sources import open_lidar_source
    from .pointcloud import encode_cloud

    source = lidar.source
    if source.startswith(("pcap:", "pcd-dir:")) and not os.path.exists(source.split(":", 1)[1]):
        print(f"lidar {lidar.name}: {source!r} not found", file=sys.stderr)
        return 1

    def open_source() -> Iterator[Sample]:
        try:
            frames = open_lidar_source(source, model=lidar.model, calibration=lidar.calibration,
                                       rate=lidar.rate, loop=lidar.loop, keep_timestamps=lidar.keep_timestamps)
            for frame in frames:
                evidence = getattr(frames, "model_evidence", None)
                if evidence is not None and "lidar_model" not in runtime.details:
                    runtime.details["lidar_model"] = evidence.as_dict()  # which evidence decided the model
                counts = getattr(frames, "packet_counts", None)
                if counts is not None:
                    runtime.details["lidar_packets"] = counts  # lost / out of order (drivers/lidar/loss.py)
                yield Sample(frame.capture_ns, frame, clock_offset_ns=getattr(frames, "clock_offset_ns", None))
        except (OSError, ValueError) as exc:
            raise SensorError(f"lidar {lidar.name} ({source}): {exc}") from None

    def encode(frame: LidarFrame) -> tuple[memoryview, dict[str, str]]:
        value, headers = encode_cloud(frame.points)
        headers["model"] = frame.model
        if frame.axes:
            headers["axes"] = frame.axes
        return value, headers

    runtime = DriverRuntime(
        name=lidar.name, kind="lidar", topic=lidar.resolved_topic(), producer=_producer(endpoint, codec="zstd"),
        encode=encode, queue_size=lidar.queue_size, policy=_overload_policy(lidar),
        extra_headers=_frame_headers(lidar),  # frame id = sensor name, mounting: export writes the transform
        nominal_hz=_nominal_hz(lidar.rate), on_gap=on_gap, on_clock_step=on_clock_step,
    )
    return _run(runtime, open_source, finite=_is_file_source(source) and not lidar.loop)
