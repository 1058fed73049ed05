"""The API's view of the appliance, sampled in the background and shared by every request.

``Monitor`` runs one thread that calls ``edge.status.StatusTracker.sample()`` every
``interval_s`` (the same figures ``edge status`` prints) and adds what a dashboard needs:
each topic's kind (camera, lidar, json, internal, other), its retention settings and the
capture time of its oldest held record, rate history for sparklines, and the drives list.

Guarantees:
- Requests never wait for the broker to compute a status: they read the last snapshot
  (``snapshot()``), which is replaced whole, never mutated after publication.
- A broker that is down makes ``ok`` false with the reason; the last good figures stay
  visible with their time; sampling goes on and recovers by itself.
- Listeners (the live hub, metrics) are called from the monitor thread after every sample
  with ``(snapshot, changed_topics)``; an exception in one is logged, never fatal.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.base.names import (
    CAMERA_ENCODINGS,
    HEADER_ENCODING,
    INTERNAL_TOPICS,
    JSON_ENCODING,
    POINTCLOUD_ENCODING,
    is_internal,
)
from broker.errors import BrokerError

from .broker_access import BrokerGateway

if TYPE_CHECKING:
    from edge.status import StatusTracker

logger = logging.getLogger("edge.api.monitor")

SLOW_EVERY_S = 10.0

Listener = Callable[[dict[str, Any], list[str]], None]


def kind_of_encoding(encoding: str | None) -> str:
    if encoding in CAMERA_ENCODINGS:
        return "camera"
    if encoding == POINTCLOUD_ENCODING:
        return "lidar"
    if encoding == JSON_ENCODING:
        return "json"
    return "other"


class Monitor:
    def __init__(self, gateway: BrokerGateway, *, interval_s: float = 1.0, history: int = 120,
                 min_free_bytes: int = 0, critical_free_bytes: int = 0,
                 topic_kinds: dict[str, str] | None = None, with_drives: bool = True):
        self.gateway = gateway
        self.interval_s = interval_s
        self.history_len = history
        self.min_free_bytes = min_free_bytes
        self.critical_free_bytes = critical_free_bytes
        self.with_drives = with_drives
        self._kinds: dict[str, str] = dict.fromkeys(INTERNAL_TOPICS, "internal")
        self._kinds.update(topic_kinds or {})
        self._probed: dict[str, float] = {}
        self._history: dict[str, collections.deque[Any]] = {}
        self._oldest: dict[tuple[str, int], tuple[int, int | None]] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._drives: list[dict[str, Any]] = []
        self._drives_error: str | None = None
        self._last_slow = 0.0
        self._listeners: list[Listener] = []
        self._snapshot: dict[str, Any] = self._empty("not sampled yet")
        self._last_ok_monotonic: float | None = None
        self._next_offsets: dict[str, int] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._tracker: StatusTracker | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Monitor:
        self._status_tracker()
        self._thread = threading.Thread(target=self._run, name="edge-api-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def refresh_soon(self) -> None:
        """Sample now rather than at the next tick (e.g. after a job changed the drives)."""
        self._last_slow = 0.0
        self._wake.set()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- reading -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return self._snapshot

    def history(self) -> dict[str, dict[str, list[float]]]:
        out = {}
        for topic, samples in list(self._history.items()):
            rows = list(samples)
            out[topic] = {"time_s": [r[0] for r in rows], "records_per_s": [r[1] for r in rows],
                          "bytes_per_s": [r[2] for r in rows]}
        return out

    def topic_kind(self, topic: str) -> str:
        return self._kinds.get(topic, "other")

    def ready(self) -> tuple[bool, str]:
        """Ready when the broker answered within the last three intervals. The reason is
        fit for a public probe: no endpoint, path or error text (those are in /api/status)."""
        if self._last_ok_monotonic is None:
            return False, "the broker has not answered yet"
        age = time.monotonic() - self._last_ok_monotonic
        if age > max(3 * self.interval_s, 5.0):
            return False, f"no answer from the broker for {age:.0f}s"
        return True, "ok"

    # -- sampling ------------------------------------------------------------------------

    def _empty(self, error: str) -> dict[str, Any]:
        return {"time_ns": time.time_ns(), "ok": False, "error": error, "broker": None,
                "disk": None, "topics": {}, "drivers": {}, "mirror": None, "groups": {}, "drives": [],
                "drives_error": None}

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample_once()
            self._wake.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
            self._wake.clear()

    def _status_tracker(self) -> StatusTracker:
        if self._tracker is None:
            from edge.status import StatusTracker

            self._tracker = StatusTracker(self.gateway.endpoint, min_free_bytes=self.min_free_bytes,
                                          include_drives=False)
        return self._tracker

    def sample_once(self) -> dict[str, Any]:
        try:
            status = self._status_tracker().sample()
            if time.monotonic() - self._last_slow >= SLOW_EVERY_S:
                self._slow_refresh(status)
                self._last_slow = time.monotonic()
            snapshot = self._decorate(status)
            self._last_ok_monotonic = time.monotonic()
        except BrokerError as exc:
            previous = self._snapshot
            snapshot = {**previous, "ok": False, "error": exc.message}
        except Exception as exc:  # the monitor must survive anything
            logger.exception("status sampling failed")
            snapshot = {**self._snapshot, "ok": False, "error": f"status sampling failed: {type(exc).__name__}"}
        changed = self._changed_topics(snapshot)
        self._snapshot = snapshot
        for listener in list(self._listeners):
            try:
                listener(snapshot, changed)
            except Exception:
                logger.exception("status listener failed")
        return snapshot

    def _changed_topics(self, snapshot: dict[str, Any]) -> list[str]:
        changed = []
        for name, topic in snapshot.get("topics", {}).items():
            total = sum(p["next_offset"] for p in topic.get("partitions", []))
            if self._next_offsets.get(name) != total:
                changed.append(name)
                self._next_offsets[name] = total
        return changed

    def _slow_refresh(self, status: dict[str, Any]) -> None:
        """Every SLOW_EVERY_S: topic configs, oldest record times, topic kinds, drives."""
        try:
            meta = self.gateway.metadata()
            self._configs = {name: t["config"] for name, t in meta["topics"].items()}
        except BrokerError:
            pass
        for name, topic in status["topics"].items():
            for p in topic["partitions"]:
                key = (name, p["partition"])
                cached = self._oldest.get(key)
                if p["next_offset"] <= p["log_start"]:
                    self._oldest[key] = (p["log_start"], None)
                elif cached is None or cached[0] != p["log_start"] or cached[1] is None:
                    first = self.gateway.first_timestamp(name, p["partition"], p["log_start"])
                    self._oldest[key] = (p["log_start"], first)
            self._probe_kind(name, topic)
        if self.with_drives:
            try:
                from edge.drives import list_drives

                self._drives = [d.to_json() for d in list_drives(self.gateway.endpoint)]
                self._drives_error = None
            except BrokerError as exc:
                self._drives_error = exc.message
            except ImportError:
                self._drives_error = "drives are not available in this build"

    def _probe_kind(self, name: str, topic: dict[str, Any]) -> None:
        if name in self._kinds:
            return
        if time.monotonic() - self._probed.get(name, 0.0) < SLOW_EVERY_S:
            return
        self._probed[name] = time.monotonic()
        try:
            record = self.gateway.latest_record(name, topic["partitions"])
        except BrokerError:
            return
        if record is not None:
            self._kinds[name] = kind_of_encoding(record.header(HEADER_ENCODING))

    def _decorate(self, status: dict[str, Any]) -> dict[str, Any]:
        now_s = time.time()
        topics = {}
        oldest_overall: int | None = None
        for name, topic in status["topics"].items():
            if name not in self._kinds and name not in self._probed:
                self._probe_kind(name, topic)
            config = self._configs.get(name, {})
            known = [self._oldest.get((name, p["partition"]), (0, None))[1] for p in topic["partitions"]]
            oldest = [o for o in known if o is not None]
            oldest_ns = min(oldest) if oldest else None
            if oldest_ns is not None and not is_internal(name):
                oldest_overall = oldest_ns if oldest_overall is None else min(oldest_overall, oldest_ns)
            topics[name] = {**topic, "kind": self.topic_kind(name), "oldest_ns": oldest_ns,
                            "retention_age": config.get("retention_age"),
                            "retention_bytes": config.get("retention_bytes"),
                            "priority": config.get("priority")}
            samples = self._history.setdefault(name, collections.deque(maxlen=self.history_len))
            samples.append((round(now_s, 3), topic.get("records_per_s") or 0.0, topic.get("bytes_per_s") or 0.0))
        for gone in set(self._history) - set(topics):
            del self._history[gone]
        disk = dict(status["disk"])
        total = disk.get("total_bytes") or 0
        disk.update(min_free_bytes=self.min_free_bytes, critical_free_bytes=self.critical_free_bytes,
                    used_fraction=round(1 - disk["free_bytes"] / total, 4) if total else None,
                    oldest_ns=oldest_overall,
                    held_s=round((time.time_ns() - oldest_overall) / 1e9, 1) if oldest_overall else None)
        return {**status, "ok": True, "error": None, "disk": disk, "topics": topics,
                "drives": self._drives, "drives_error": self._drives_error}
