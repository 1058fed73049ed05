"""Latest camera frames and LiDAR renders: served over HTTP and pushed to live clients.

Guarantees:
- ``MediaCache.latest_jpeg(topic)`` answers with the newest record of a camera topic as
  JPEG: a JPEG record is passed through byte for byte; PNG and raw BGR records (and any
  ``width`` downscale) are converted with OpenCV, imported only when first needed;
  H.264/H.265 records are decoded (``LatestVideoFrame``: forward from the last decoded
  record, or from the last keyframe) and then converted.
- ``MediaCache.latest_birdseye(topic, …)`` renders the newest point cloud with numpy
  (``edge.api.render``). Results are cached per (record, parameters), so many viewers of
  one topic cost one fetch and one render per new record.
- A record that is not what the endpoint expects raises ``Unprocessable`` naming its
  encoding; an empty topic raises ``NotFound``.
- ``FramePump`` runs one thread for all live clients: for the topics they watch, it asks
  the broker for the partitions' ends once per tick (one metadata request), fetches only
  topics with a new record, and hands the frame to a callback. Cameras are pushed at up
  to ``fps``, LiDAR renders at up to 2 per second. No subscribers, no broker traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.base.names import HEADER_ENCODING, IMAGE_ENCODINGS, POINTCLOUD_ENCODING, VIDEO_ENCODINGS
from broker.errors import BrokerError, UnknownTopicError
from broker.records import Record

from .broker_access import BrokerGateway
from .errors import NotFound, Unprocessable
from .render import birdseye, encode_png

logger = logging.getLogger("edge.api.frames")

VIDEO_KEYFRAME_SEARCH = 1024  # records looked back for a keyframe (a GOP longer than this shows no frame)
VIDEO_CATCH_UP = 256  # a new record this far past the last decoded one is decoded forward, not searched again
LIDAR_MAX_FPS = 2.0


@dataclass(frozen=True)
class Media:
    """An image made from one record."""

    topic: str
    partition: int
    offset: int
    timestamp_ns: int
    mime: str
    data: bytes
    width: int | None = None
    height: int | None = None

    def header(self) -> dict[str, Any]:
        return {"type": "frame", "topic": self.topic, "partition": self.partition, "offset": self.offset,
                "timestamp_ns": self.timestamp_ns, "mime": self.mime, "width": self.width, "height": self.height}


def _int_header(record: Record, name: str) -> int | None:
    text = record.header(name)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def record_to_jpeg(record: Record, *, width: int | None = None, quality: int = 80) -> Media:
    """The record's camera frame as JPEG (passthrough when it already is one and no
    resize is asked). Raises Unprocessable for a record that is not a camera frame."""
    encoding = record.header(HEADER_ENCODING)
    if encoding not in IMAGE_ENCODINGS:
        raise Unprocessable(f"{record.topic} record {record.offset} is not a camera frame (encoding {encoding!r})")
    w, h = _int_header(record, "width"), _int_header(record, "height")
    if encoding == "jpeg" and (width is None or (w is not None and width >= w)):
        return Media(record.topic, record.partition, record.offset, record.timestamp, "image/jpeg",
                     bytes(record.value), w, h)
    from drivers.camera.encoding import decode_frame

    try:
        image = decode_frame(record.value, record.headers)
    except ValueError as exc:
        raise Unprocessable(f"{record.topic} record {record.offset}: {exc}") from None
    return image_to_jpeg(record, image, width=width, quality=quality)


def image_to_jpeg(record: Record, image: Any, *, width: int | None = None, quality: int = 80) -> Media:
    """A decoded BGR image of ``record`` as JPEG Media, downscaled to ``width`` if smaller."""
    import cv2

    if width is not None and width < image.shape[1]:
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise Unprocessable(f"{record.topic} record {record.offset}: could not encode JPEG")
    return Media(record.topic, record.partition, record.offset, record.timestamp, "image/jpeg",
                 buf.tobytes(), image.shape[1], image.shape[0])


def record_to_birdseye(record: Record, *, size: int = 512, range_m: float = 40.0, color: str = "height") -> Media:
    from drivers.pointcloud import decode_cloud

    encoding = record.header(HEADER_ENCODING)
    if encoding != POINTCLOUD_ENCODING:
        raise Unprocessable(f"{record.topic} record {record.offset} is not a point cloud (encoding {encoding!r})")
    try:
        points = decode_cloud(record.value, record.headers)
        image = birdseye(points, size=size, range_m=range_m, color=color)
    except ValueError as exc:
        raise Unprocessable(f"{record.topic} record {record.offset}: {exc}") from None
    return Media(record.topic, record.partition, record.offset, record.timestamp, "image/png",
                 encode_png(image), size, size)


class LatestVideoFrame:
    """The newest image of H.264/H.265 topics: a delta frame needs the frames before it, so
    each partition keeps a decoder that goes forward from the last record it decoded, or
    starts again at the last keyframe (``keyframe: 1`` header) when it fell behind."""

    def __init__(self, gateway: BrokerGateway):
        self.gateway = gateway
        self._lock = threading.Lock()
        self._decoders: dict[tuple[str, int], tuple[Any, int]] = {}  # (decoder, next offset to feed)

    def image(self, record: Record) -> Any:
        from drivers.camera.video import VideoDecoder, is_keyframe

        key = (record.topic, record.partition)
        with self._lock:
            decoder, next_offset = self._decoders.pop(key, (None, -1))
            if decoder is None or decoder.encoding != record.header(HEADER_ENCODING) or \
                    not next_offset <= record.offset <= next_offset + VIDEO_CATCH_UP:
                decoder, next_offset = VideoDecoder(record.header(HEADER_ENCODING) or ""), self._keyframe_before(record)
            image = None
            while next_offset <= record.offset:
                batch = self.gateway.read_records(record.topic, record.partition, next_offset,
                                                  record.offset - next_offset + 1)
                if not batch:
                    break
                for item in batch:
                    next_offset = item.offset + 1
                    if image is None and not decoder.decode_started and not is_keyframe(item.headers):
                        continue
                    try:
                        out = decoder.decode(item.value, item.headers)
                    except ValueError as exc:
                        raise Unprocessable(f"{record.topic} record {item.offset}: {exc}") from None
                    if out:
                        image = out[-1][0]
            self._decoders[key] = (decoder, next_offset)
        if image is None:
            raise Unprocessable(f"{record.topic}: no keyframe within {VIDEO_KEYFRAME_SEARCH} records of "
                                f"offset {record.offset}, the video cannot be decoded there yet")
        return image

    def _keyframe_before(self, record: Record) -> int:
        """Offset of the last keyframe at or before ``record`` (searched backwards)."""
        from drivers.camera.video import is_keyframe

        if is_keyframe(record.headers):
            return record.offset
        end, step = record.offset, 64
        while end > max(0, record.offset - VIDEO_KEYFRAME_SEARCH):
            start = max(0, end - step)
            batch = self.gateway.read_records(record.topic, record.partition, start, end - start)
            keys = [r.offset for r in batch if is_keyframe(r.headers) and r.offset < end]
            if keys:
                return keys[-1]
            if not batch:
                break
            end = start
        return record.offset  # none found: the decode refuses the delta frames and says so


class MediaCache:
    """Newest frame/render per topic and parameters; re-made only when a new record lands."""

    def __init__(self, gateway: BrokerGateway, *, max_entries: int = 64):
        self.gateway = gateway
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], Media] = {}
        self._video = LatestVideoFrame(gateway)

    def _to_jpeg(self, record: Record, width: int | None) -> Media:
        if record.header(HEADER_ENCODING) in VIDEO_ENCODINGS:
            return image_to_jpeg(record, self._video.image(record), width=width)
        return record_to_jpeg(record, width=width)

    def _latest(self, topic: str, partitions: list[dict[str, Any]] | None = None) -> Record:
        record = self.gateway.latest_record(topic, partitions)
        if record is None:
            raise NotFound(f"topic {topic!r} holds no records")
        return record

    def _cached(self, key: tuple[Any, ...], record: Record, make: Callable[[Record], Media]) -> Media:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and (hit.partition, hit.offset) == (record.partition, record.offset):
            return hit
        media = make(record)
        with self._lock:
            if len(self._cache) >= self.max_entries and key not in self._cache:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = media
        return media

    def latest_jpeg(self, topic: str, *, width: int | None = None,
                    partitions: list[dict[str, Any]] | None = None) -> Media:
        record = self._latest(topic, partitions)
        return self._cached(("jpeg", topic, width), record, lambda r: self._to_jpeg(r, width))

    def latest_birdseye(self, topic: str, *, size: int = 512, range_m: float = 40.0, color: str = "height",
                        partitions: list[dict[str, Any]] | None = None) -> Media:
        record = self._latest(topic, partitions)
        return self._cached(("bev", topic, size, range_m, color), record,
                            lambda r: record_to_birdseye(r, size=size, range_m=range_m, color=color))


class FramePump:
    """One thread that pushes new frames of watched topics to ``on_media``."""

    def __init__(self, cache: MediaCache, on_media: Callable[[Media], None], *, fps: float = 10.0):
        self.cache = cache
        self.on_media = on_media
        self.period_s = 1.0 / fps
        self.poll_s = max(0.02, self.period_s / 2)  # poll twice per frame period: less beat, less latency
        self._topics: dict[str, str] = {}
        self._ends: dict[str, tuple[Any, ...]] = {}
        self._last_push: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-api-frames", daemon=True)

    def start(self) -> FramePump:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(5)

    def watch(self, topics: dict[str, str]) -> None:
        """Replace the watched set: topic → "camera" or "lidar"."""
        with self._lock:
            self._topics = dict(topics)
            self._ends = {t: e for t, e in self._ends.items() if t in topics}
        self._changed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                topics = dict(self._topics)
            if not topics:
                self._changed.wait(1.0)
                self._changed.clear()
                continue
            started = time.monotonic()
            try:
                self._tick(topics)
            except BrokerError as exc:
                logger.debug("frame pump: %s", exc.message)
                self._stop.wait(0.5)
            except Exception:  # keep pushing the other topics
                logger.exception("frame pump failed")
                self._stop.wait(0.5)
            self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - started)))

    def _tick(self, topics: dict[str, str]) -> None:
        try:
            meta = self.cache.gateway.metadata()["topics"]
        except UnknownTopicError:
            return
        now = time.monotonic()
        for topic, kind in topics.items():
            info = meta.get(topic)
            if info is None:
                continue
            end = tuple(p["next_offset"] for p in info["partitions"])
            if self._ends.get(topic) == end:
                continue
            min_period = self.period_s if kind == "camera" else max(self.period_s, 1.0 / LIDAR_MAX_FPS)
            if now - self._last_push.get(topic, 0.0) < min_period * 0.9:
                continue
            try:
                if kind == "lidar":
                    media = self.cache.latest_birdseye(topic, partitions=info["partitions"])
                else:
                    media = self.cache.latest_jpeg(topic, partitions=info["partitions"])
            except (NotFound, Unprocessable) as exc:
                logger.debug("frame pump %s: %s", topic, exc.message)
                self._ends[topic] = end
                continue
            self._ends[topic] = end
            self._last_push[topic] = now
            self.on_media(media)
