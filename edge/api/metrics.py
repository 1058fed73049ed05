"""Prometheus metrics (``/metrics``): the appliance's counters and gauges, per topic and process.

Built from the monitor's last snapshot at scrape time, so a scrape never waits on the
broker and every figure in one scrape comes from one sample. Each app has its own
registry (no global state; several apps can live in one test process). Names:

- per topic: ``edge_topic_records_total`` (offsets assigned), ``edge_topic_held_records``, ``edge_topic_bytes``,
  ``edge_topic_records_per_second``,  ``edge_topic_bytes_per_second``, ``edge_topic_oldest_record_age_seconds``,
  ``edge_partition_next_offset`` / ``edge_partition_log_start_offset``,
  ``edge_partition_future_records_total`` (stamped over ``max_future_skew`` ahead, since the broker started);
  continuity, where a driver reports on the topic (drivers/continuity.py): ``edge_topic_gaps_total``,
  ``edge_topic_last_gap_seconds``, ``edge_topic_open_gap_seconds`` (a stall going on),
  ``edge_topic_usual_interval_seconds``, ``edge_topic_rate_ratio`` (rate / nominal),
  ``edge_topic_duplicates_total``, ``edge_topic_reordered_total``;
- disk: ``edge_disk_total_bytes``, ``edge_disk_free_bytes``, ``edge_disk_data_bytes``,
  ``edge_disk_write_bytes_per_second``, ``edge_disk_retention_horizon_hours``,
  ``edge_broker_segment_deletions_total{reason}``, ``edge_broker_unshipped_deleted_bytes_total``,
  ``edge_broker_corrupt_batches_total``; events (pins): ``edge_events``, ``edge_events_pinned_bytes``,
  ``edge_broker_pinned_deleted_bytes_total`` (pinned records the disk guard's critical level deleted);
- broker limits (broker/limits.py): ``edge_broker_disk_full`` (1 while writes are refused),
  ``edge_broker_<counter>_total`` for each BrokerStats counter (refusals, clamps, accept
  failures), ``edge_broker_background_errors_total{task}``,
  ``edge_broker_fetch_position_errors_total{error}`` (fetches told their position is no
  longer in the log: offset_out_of_range, log_truncated), gauges ``edge_broker_connections``,
  ``edge_broker_parked_fetches``, ``edge_broker_unread_reply_bytes``, ``edge_broker_partitions``
  and ``edge_broker_limit{name}``;
- per driver process: ``edge_driver_{captured,published,acknowledged,unknown}_total``,
  ``edge_driver_dropped_total{reason}``, ``edge_driver_rate_hz``, ``edge_driver_queue_depth``,
  ``edge_driver_up`` (state running), ``edge_driver_last_capture_age_seconds``,
  ``edge_driver_clock_offset_ms`` (host − sensor clock, where the driver knows both);
  LiDAR drivers also ``edge_lidar_packets_total{outcome=received|lost|out_of_order|skipped}``
  (from the health record's ``details.lidar_packets``, drivers/lidar/loss.py);
- mirror: ``edge_mirror_up`` (link up and not stalled), ``edge_mirror_condition{condition}``
  (up, stalled, down, stopped, ...) and every numeric field it reports as ``edge_mirror_<field>``,
  per-partition lag as ``edge_mirror_lag_<field>{topic,partition}``;
- groups: ``edge_group_lag_records``, ``edge_group_members``;
- this API process: ``edge_api_status_ok``, ``edge_api_status_age_seconds``,
  ``edge_api_live_clients``, ``edge_api_jobs{state}`` and the standard ``process_*``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_]")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class SnapshotCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]], extras: Callable[[], dict[str, Any]] | None = None):
        self.snapshot = snapshot
        self.extras = extras or dict

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families depend on what is running

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        yield from self._topics(snap.get("topics") or {})
        yield from self._disk(snap.get("disk"), snap.get("broker"))
        yield from self._drivers(snap.get("drivers") or {})
        yield from self._mirror(snap.get("mirror"))
        yield from self._groups(snap.get("groups") or {})
        yield from self._api(snap)

    def _topics(self, topics: dict[str, Any]) -> Iterable[Metric]:
        total = CounterMetricFamily("edge_topic_records", "records ever appended (sum of next offsets)",
                                    labels=["topic"])
        held = GaugeMetricFamily("edge_topic_held_records", "records held on disk", labels=["topic"])
        size = GaugeMetricFamily("edge_topic_bytes", "bytes held on disk", labels=["topic"])
        rps = GaugeMetricFamily("edge_topic_records_per_second", "append rate", labels=["topic"])
        bps = GaugeMetricFamily("edge_topic_bytes_per_second", "append rate in bytes", labels=["topic"])
        age = GaugeMetricFamily("edge_topic_oldest_record_age_seconds", "age of the oldest held record",
                                labels=["topic"])
        next_off = GaugeMetricFamily("edge_partition_next_offset", "next offset", labels=["topic", "partition"])
        start = GaugeMetricFamily("edge_partition_log_start_offset", "first held offset", labels=["topic", "partition"])
        future = CounterMetricFamily("edge_partition_future_records",
                                     "records stamped more than max_future_skew ahead "
                                     "(flagged, left out of time lookups)",
                                     labels=["topic", "partition"])
        now = time.time_ns()
        for name, t in sorted(topics.items()):
            parts = t.get("partitions") or []
            total.add_metric([name], float(sum(p.get("next_offset", 0) for p in parts)))
            held.add_metric([name], float(t.get("records") or 0))
            size.add_metric([name], float(t.get("bytes") or 0))
            rps.add_metric([name], float(t.get("records_per_s") or 0))
            bps.add_metric([name], float(t.get("bytes_per_s") or 0))
            if t.get("oldest_ns"):
                age.add_metric([name], max(0.0, (now - t["oldest_ns"]) / 1e9))
            for p in parts:
                next_off.add_metric([name, str(p.get("partition"))], float(p.get("next_offset", 0)))
                start.add_metric([name, str(p.get("partition"))], float(p.get("log_start", 0)))
                future.add_metric([name, str(p.get("partition"))], float(p.get("future_records", 0)))
        return [total, held, size, rps, bps, age, next_off, start, future, *self._continuity(topics)]

    def _continuity(self, topics: dict[str, Any]) -> Iterable[Metric]:
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "gaps": CounterMetricFamily("edge_topic_gaps", "stalls longer than 3x the usual interval",
                                        labels=["topic"]),
            "duplicates": CounterMetricFamily("edge_topic_duplicates", "captures stamped like the previous one",
                                              labels=["topic"]),
            "reordered": CounterMetricFamily("edge_topic_reordered", "captures older than the newest",
                                             labels=["topic"]),
            "rate_ratio": GaugeMetricFamily("edge_topic_rate_ratio", "learned rate / nominal rate", labels=["topic"]),
        }
        seconds = {
            "usual_interval_ms": GaugeMetricFamily("edge_topic_usual_interval_seconds", "learned capture interval",
                                                   labels=["topic"]),
            "open_gap_ms": GaugeMetricFamily("edge_topic_open_gap_seconds", "a stall going on", labels=["topic"]),
        }
        last_gap = GaugeMetricFamily("edge_topic_last_gap_seconds", "length of the last gap", labels=["topic"])
        for name, t in sorted(topics.items()):
            for key, fam in fams.items():
                if _num(t.get(key)) is not None:
                    fam.add_metric([name], float(t[key]))
            for key, fam in seconds.items():
                if _num(t.get(key)) is not None:
                    fam.add_metric([name], float(t[key]) / 1000)
            if isinstance(t.get("last_gap"), dict) and _num(t["last_gap"].get("length_ms")) is not None:
                last_gap.add_metric([name], float(t["last_gap"]["length_ms"]) / 1000)
        return [*fams.values(), *seconds.values(), last_gap]

    def _disk(self, disk: dict[str, Any] | None, broker: dict[str, Any] | None) -> Iterable[Metric]:
        if not disk:
            return []
        out: list[Metric] = []
        for key, name, doc in (("total_bytes", "edge_disk_total_bytes", "size of the data directory's filesystem"),
                               ("free_bytes", "edge_disk_free_bytes", "free space for the broker"),
                               ("data_bytes", "edge_disk_data_bytes", "bytes of all topics"),
                               ("write_bytes_per_s", "edge_disk_write_bytes_per_second", "write rate, all topics"),
                               ("retention_horizon_h", "edge_disk_retention_horizon_hours",
                                "hours of data the disk holds at the current rate"),
                               ("min_free_bytes", "edge_disk_guard_min_free_bytes", "disk guard threshold")):
            value = _num(disk.get(key))
            if value is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], value)
                out.append(g)
        if broker:
            deletions = CounterMetricFamily("edge_broker_segment_deletions", "segments deleted", labels=["reason"])
            for reason, count in sorted((broker.get("deletions") or {}).items()):
                deletions.add_metric([str(reason)], float(count))
            out.append(deletions)
            unshipped = CounterMetricFamily("edge_broker_unshipped_deleted_bytes",
                                            "bytes deleted before the mirror shipped them")
            unshipped.add_metric([], float(broker.get("unshipped_deleted_bytes") or 0))
            out.append(unshipped)
            events = GaugeMetricFamily("edge_events", "events (pinned windows) held")
            events.add_metric([], float(broker.get("pins") or 0))
            pinned = GaugeMetricFamily("edge_events_pinned_bytes", "bytes pinned by events (shared segments once)")
            pinned.add_metric([], float(broker.get("pinned_bytes") or 0))
            pinned_lost = CounterMetricFamily("edge_broker_pinned_deleted_bytes",
                                              "events' pinned bytes deleted by the disk guard's critical level")
            pinned_lost.add_metric([], float(broker.get("pinned_deleted_bytes") or 0))
            out += [events, pinned, pinned_lost]
            corrupt = CounterMetricFamily("edge_broker_corrupt_batches",
                                          "damaged batches met by reads (bad header chain or offsets)")
            corrupt.add_metric([], float(broker.get("corrupt_batches") or 0))
            out.append(corrupt)
            out.extend(self._broker_limits(broker))
        return out

    def _broker_limits(self, broker: dict[str, Any]) -> Iterable[Metric]:
        full = GaugeMetricFamily("edge_broker_disk_full", "1 while the broker refuses writes for lack of space")
        full.add_metric([], 1.0 if broker.get("disk_full") else 0.0)
        out: list[Metric] = [full]
        stats = broker.get("stats") or {}
        gauges = ("connections", "parked_fetches", "unread_reply_bytes", "partitions")
        for key, value in sorted(stats.items()):
            num = _num(value)
            if num is None:
                continue
            name = f"edge_broker_{_NAME_SAFE.sub('_', key)}"
            family = GaugeMetricFamily if key in gauges else CounterMetricFamily
            fam = family(name, f"broker {key}")
            fam.add_metric([], num)
            out.append(fam)
        errors = CounterMetricFamily("edge_broker_background_errors", "background task failures", labels=["task"])
        for task, count in sorted((stats.get("background_errors") or {}).items()):
            errors.add_metric([str(task)], float(count))
        gone = CounterMetricFamily("edge_broker_fetch_position_errors",
                                   "fetch positions no longer in the log, by error", labels=["error"])
        for error, count in sorted((stats.get("fetch_position_errors") or {}).items()):
            gone.add_metric([str(error)], float(count))
        for key, value in sorted((broker.get("kafka") or {}).items()):  # the Kafka listener's counters
            num = _num(value)
            if num is not None:
                name = f"edge_broker_kafka_{_NAME_SAFE.sub('_', key)}"
                fam = (GaugeMetricFamily(name, f"Kafka listener {key}") if key == "connections_open"
                       else CounterMetricFamily(name, f"Kafka listener {key}"))
                fam.add_metric([], num)
                out.append(fam)
        limit = GaugeMetricFamily("edge_broker_limit", "the broker's resource limits", labels=["name"])
        for key, value in sorted((broker.get("limits") or {}).items()):
            if _num(value) is not None:
                limit.add_metric([str(key)], float(value))
        return [*out, errors, gone, limit]

    def _drivers(self, drivers: dict[str, Any]) -> Iterable[Metric]:
        labels = ["sensor", "kind", "topic"]
        fams = {
            "captured": CounterMetricFamily("edge_driver_captured", "frames/clouds captured", labels=labels),
            "published": CounterMetricFamily("edge_driver_published", "records handed to the producer", labels=labels),
            "acknowledged": CounterMetricFamily("edge_driver_acknowledged", "records acknowledged", labels=labels),
            "unknown": CounterMetricFamily("edge_driver_unknown", "records sent, outcome unknown (maybe written)",
                                           labels=labels),
            "sensor_errors": CounterMetricFamily("edge_driver_sensor_errors", "sensor failures", labels=labels),
            "reopens": CounterMetricFamily("edge_driver_reopens", "sensor reopen attempts", labels=labels),
        }
        dropped = CounterMetricFamily("edge_driver_dropped", "records dropped, by reason", labels=[*labels, "reason"])
        rate = GaugeMetricFamily("edge_driver_rate_hz", "measured capture rate", labels=labels)
        depth = GaugeMetricFamily("edge_driver_queue_depth", "frames waiting to publish", labels=labels)
        up = GaugeMetricFamily("edge_driver_up", "1 when the driver reports state running", labels=labels)
        age = GaugeMetricFamily("edge_driver_last_capture_age_seconds", "time since the last capture", labels=labels)
        clock = GaugeMetricFamily("edge_driver_clock_offset_ms", "host − sensor clock offset", labels=labels)
        packets = CounterMetricFamily("edge_lidar_packets", "LiDAR packets received, lost, out of order, skipped",
                                      labels=[*labels, "outcome"])
        now = time.time_ns()
        for sensor, h in sorted(drivers.items()):
            if not isinstance(h, dict):
                continue
            lv = [str(sensor), str(h.get("kind", "")), str(h.get("topic", ""))]
            for key, fam in fams.items():
                value = _num(h.get(key))
                if value is not None:
                    fam.add_metric(lv, value)
            for reason, count in sorted((h.get("dropped") or {}).items()):
                if _num(count) is not None:
                    dropped.add_metric([*lv, str(reason)], float(count))
            for key, gauge in (("rate_hz", rate), ("queue_depth", depth), ("clock_offset_ms", clock)):
                value = _num(h.get(key))
                if value is not None:
                    gauge.add_metric(lv, value)
            up.add_metric(lv, 1.0 if h.get("state") == "running" else 0.0)
            counts = (h.get("details") or {}).get("lidar_packets") if isinstance(h.get("details"), dict) else None
            if isinstance(counts, dict):
                skipped = counts.get("skipped")
                outcomes = {key: counts.get(key) for key in ("received", "lost", "out_of_order")}
                outcomes["skipped"] = sum(v for v in skipped.values() if _num(v) is not None) \
                    if isinstance(skipped, dict) else None
                for outcome, count in outcomes.items():
                    number = _num(count)
                    if number is not None:
                        packets.add_metric([*lv, outcome], number)
            if _num(h.get("last_capture_ns")):
                age.add_metric(lv, max(0.0, (now - h["last_capture_ns"]) / 1e9))
        return [*fams.values(), dropped, rate, depth, up, age, packets, clock]

    def _mirror(self, mirror: Any) -> Iterable[Metric]:
        if not isinstance(mirror, dict):
            return []
        out: list[Metric] = []
        link = mirror.get("condition", mirror.get("link", mirror.get("link_state", mirror.get("state"))))
        up = GaugeMetricFamily("edge_mirror_up", "1 when the mirror's link to Kafka is up and it is not stalled")
        up.add_metric([], 1.0 if link in (True, "up", "connected", "online", "running") else 0.0)
        out.append(up)
        if "condition" in mirror:  # up | stalled | down | stopped | failed | idle | starting
            condition = GaugeMetricFamily("edge_mirror_condition", "1 for the mirror's condition as `edge status` "
                                          "shows it", labels=["condition"])
            condition.add_metric([str(mirror["condition"])], 1.0)
            out.append(condition)
        for key, value in sorted(mirror.items()):
            num = _num(value)
            if num is not None and key not in ("time_ns",):
                g = GaugeMetricFamily(f"edge_mirror_{_NAME_SAFE.sub('_', key)}", f"mirror {key}")
                g.add_metric([], num)
                out.append(g)
        lag = mirror.get("lag") or mirror.get("partitions")
        rows = lag if isinstance(lag, list) else []
        fams: dict[str, GaugeMetricFamily] = {}
        for row in rows:
            if not isinstance(row, dict) or "topic" not in row:
                continue
            lv = [str(row.get("topic")), str(row.get("partition", 0))]
            for key, value in row.items():
                num = _num(value)
                if num is None or key in ("partition",):
                    continue
                name = f"edge_mirror_lag_{_NAME_SAFE.sub('_', key)}"
                fam = fams.setdefault(name, GaugeMetricFamily(name, f"mirror lag: {key}",
                                                              labels=["topic", "partition"]))
                fam.add_metric(lv, num)
        out.extend(fams.values())
        return out

    def _groups(self, groups: dict[str, Any]) -> Iterable[Metric]:
        lag = GaugeMetricFamily("edge_group_lag_records", "records not yet consumed by the group", labels=["group"])
        members = GaugeMetricFamily("edge_group_members", "live members", labels=["group"])
        for name, g in sorted(groups.items()):
            lag.add_metric([name], float(g.get("lag") or 0))
            members.add_metric([name], float(g.get("members") or 0))
        return [lag, members]

    def _api(self, snap: dict[str, Any]) -> Iterable[Metric]:
        ok = GaugeMetricFamily("edge_api_status_ok", "1 when the last status sample reached the broker")
        ok.add_metric([], 1.0 if snap.get("ok") else 0.0)
        age = GaugeMetricFamily("edge_api_status_age_seconds", "age of the last status sample")
        age.add_metric([], max(0.0, (time.time_ns() - (snap.get("time_ns") or time.time_ns())) / 1e9))
        out: list[Metric] = [ok, age]
        extras = self.extras()
        clients = GaugeMetricFamily("edge_api_live_clients", "connected live (WebSocket) clients")
        clients.add_metric([], float(extras.get("live_clients", 0)))
        jobs = GaugeMetricFamily("edge_api_jobs", "jobs by state", labels=["state"])
        for state, count in sorted((extras.get("jobs") or {}).items()):
            jobs.add_metric([state], float(count))
        out += [clients, jobs]
        return out


def build_registry(snapshot: Callable[[], dict[str, Any]],
                   extras: Callable[[], dict[str, Any]] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, extras))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
