"""What the appliance is doing, gathered over the broker protocol only.

``StatusTracker.sample()`` returns one dict used by ``edge status``, the live display of
``edge up`` and the HTTP API: topics (records, bytes, rates from the previous sample),
disk use and the retention horizon, driver health and the mirror's state (the latest
``_health`` record per sender), consumer groups with lag, and drives.

Mirror condition (``mirror_condition``), from its last report and the ``_mirror`` group:
``down`` when the report is older than ``MIRROR_DOWN_AFTER_S`` (it reports every second,
also while Kafka calls block) or its process is gone (same host); ``stopped``/``failed``
with the reason of its final report; ``stalled`` (since its last progress: a commit, or a
moment with nothing to ship) when nothing was committed for ``stall_after_ns`` while the
``_mirror`` group has records to ship; else the
link state it reports (up, down, idle, starting).

Retention horizon: hours of data the disk can hold at the current write rate,
``(bytes held + free - min_free) / bytes per second``; None while nothing is written.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from broker.client import Admin, Consumer
from broker.errors import BrokerError, UnknownTopicError
from drivers.runtime import HEALTH_TOPIC  # the one definition of the health topic's name

HEALTH_LOOKBACK = 64  # records per partition read from the end of _health
# broker stats (broker/limits.py BrokerStats) shown in the one-screen view when not zero
REFUSAL_COUNTERS = ("clients_refused", "fetch_parked_refused", "reply_backlog_refused", "partitions_refused",
                    "accept_failures", "disk_full_refusals")
MIRROR_DOWN_AFTER_S = 5.0  # five report intervals


def _process_gone(pid: Any, host: Any) -> bool:
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def mirror_condition(report: dict[str, Any] | None, group_lag: int | None, now_ns: int) -> dict[str, Any]:
    """What `edge status`, the API and /metrics say about the mirror (see the module doc)."""
    if not report:
        return {"condition": "no report", "condition_reason": "no mirror status in _health (not configured or not "
                "started)", "condition_since_ns": None}
    reported = report.get("time_ns") or 0
    age_s = (now_ns - reported) / 1e9
    out = {"report_age_s": round(age_s, 1)}
    if report.get("state") in ("stopped", "failed"):
        return {**out, "condition": report["state"], "condition_reason": report.get("stop_reason"),
                "condition_since_ns": reported}
    if age_s > MIRROR_DOWN_AFTER_S or _process_gone(report.get("pid"), report.get("host")):
        return {**out, "condition": "down", "condition_since_ns": reported,
                "condition_reason": f"no report for {age_s:.0f}s" if age_s > MIRROR_DOWN_AFTER_S else
                "its process is gone"}
    since = report.get("last_progress_ns") or report.get("last_commit_ns") or report.get("started_ns") or reported
    stall_after = report.get("stall_after_ns") or 10**10
    waiting = group_lag if group_lag is not None else report.get("lag_records", 0)
    if waiting and now_ns - since > stall_after:
        return {**out, "condition": "stalled", "condition_since_ns": since,
                "condition_reason": f"nothing committed for {(now_ns - since) / 1e9:.0f}s, {waiting} records waiting"
                                    + (f" (last error: {report['last_error']})" if report.get("last_error") else "")}
    return {**out, "condition": report.get("link", "?"), "condition_since_ns": None, "condition_reason": None}


def latest_health(endpoint: str, admin: Admin) -> dict[str, dict[str, Any]]:
    """The newest ``_health`` record per sender key (sensor name, or ``mirror``)."""
    try:
        partitions = admin.describe_topic(HEALTH_TOPIC)["partitions"]
    except UnknownTopicError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    consumer = Consumer(endpoint, max_wait_ms=0)
    try:
        for p in partitions:
            end = p["next_offset"]
            start = max(p["log_start"], end - HEALTH_LOOKBACK)
            consumer.assign([(HEALTH_TOPIC, p["partition"])])
            consumer.seek(HEALTH_TOPIC, p["partition"], start)
            while consumer.position(HEALTH_TOPIC, p["partition"]) < end:
                records = consumer.poll(1.0)
                if not records:
                    break
                for record in records:
                    if record.key is None:
                        continue
                    try:
                        out[record.key.decode()] = json.loads(bytes(record.value))
                    except ValueError:
                        continue
    finally:
        consumer.close()
    return out


class StatusTracker:
    def __init__(self, endpoint: str, *, min_free_bytes: int = 0, include_drives: bool = True):
        self.endpoint = endpoint
        self.min_free_bytes = min_free_bytes
        self.include_drives = include_drives
        self._previous: tuple[float, dict[str, tuple[int, int]]] | None = None

    def sample(self) -> dict[str, Any]:
        now = time.monotonic()
        with Admin(self.endpoint, timeout_s=5.0) as admin:
            meta = admin.metadata()
            health = latest_health(self.endpoint, admin)
            groups = admin.list_groups()
        broker = meta["broker"]
        counters = {}
        topics = {}
        for name, topic in meta["topics"].items():
            records = sum(p["next_offset"] for p in topic["partitions"])
            size = sum(p["size_bytes"] for p in topic["partitions"])
            held = sum(p["next_offset"] - p["log_start"] for p in topic["partitions"])
            counters[name] = (records, size)
            topics[name] = {"partitions": topic["partitions"], "records": held, "total_records": records,
                            "bytes": size, "records_per_s": None, "bytes_per_s": None,
                            "codec": topic["config"]["codec"]}
        if self._previous is not None:
            then, before = self._previous
            dt = max(now - then, 1e-3)
            for name, (records, size) in counters.items():
                old_records, old_size = before.get(name, (0, 0))  # a new topic grew from nothing
                topics[name]["records_per_s"] = round(max(0, records - old_records) / dt, 2)
                topics[name]["bytes_per_s"] = round(max(0, size - old_size) / dt, 1)
        self._previous = (now, counters)
        write_rate = sum(t["bytes_per_s"] or 0 for t in topics.values())
        held_bytes = sum(t["bytes"] for t in topics.values())
        usable = held_bytes + broker["disk_free_bytes"] - self.min_free_bytes
        horizon_h = round(usable / write_rate / 3600, 2) if write_rate > 0 else None
        pinned = broker.get("pinned_bytes", 0)  # events' pins (edge/events.py): kept out of the rolling window
        rolling_h = round(max(0, usable - pinned) / write_rate / 3600, 2) if write_rate > 0 else None
        group_lag = {}
        for group, info in groups.items():
            lag = 0
            for t, p, offset in info["offsets"]:
                parts = meta["topics"].get(t, {}).get("partitions", [])
                if p < len(parts):
                    lag += max(0, parts[p]["next_offset"] - offset)
            group_lag[group] = {"members": len(info["members"]), "generation": info["generation"], "lag": lag}
        drivers = {k: v for k, v in health.items() if k != "mirror"}
        add_continuity(topics, drivers)
        status = {
            "time_ns": time.time_ns(),
            "broker": broker,
            "disk": {"total_bytes": broker["disk_total_bytes"], "free_bytes": broker["disk_free_bytes"],
                     "data_bytes": held_bytes, "write_bytes_per_s": write_rate, "retention_horizon_h": horizon_h,
                     "full": bool(broker.get("disk_full")), "full_since_ns": broker.get("disk_full_since_ns"),
                     "events": broker.get("pins", 0), "pinned_bytes": pinned, "rolling_horizon_h": rolling_h,
                     "pinned_deleted_bytes": broker.get("pinned_deleted_bytes", 0)},
            "topics": topics,
            "drivers": drivers,
            "mirror": None if not health.get("mirror") else {**health["mirror"], **mirror_condition(
                health["mirror"], (group_lag.get("_mirror") or {}).get("lag"), time.time_ns())},
            "groups": group_lag,
        }
        if self.include_drives:
            from edge.drives import list_drives

            try:
                status["drives"] = [d.to_json() for d in list_drives(self.endpoint)]
            except BrokerError:
                status["drives"] = []
        return status


CONTINUITY_FIELDS = ("gaps", "last_gap", "open_gap_ms", "usual_interval_ms", "rate_hz", "nominal_hz", "rate_ratio",
                     "duplicates", "reordered")


def add_continuity(topics: dict[str, Any], drivers: dict[str, Any]) -> None:
    """Per topic, the continuity its driver reports (drivers/continuity.py): ``gaps``, ``last_gap``
    and the rest; None where no driver reports on the topic. Per sensor ``clock_offset_ms`` is in
    the driver's own health record."""
    for t in topics.values():
        t.setdefault("gaps", None)
        t.setdefault("last_gap", None)
    for d in drivers.values():
        continuity = d.get("continuity") if isinstance(d, dict) else None
        if isinstance(continuity, dict) and d.get("topic") in topics:
            topics[d["topic"]].update({k: continuity.get(k) for k in CONTINUITY_FIELDS})
            d.setdefault("clock_offset_ms", continuity.get("clock_offset_ms"))


def collect_status(endpoint: str, *, min_free_bytes: int = 0, interval_s: float = 1.0) -> dict[str, Any]:
    """Two samples ``interval_s`` apart, so rates are filled in."""
    tracker = StatusTracker(endpoint, min_free_bytes=min_free_bytes)
    tracker.sample()
    time.sleep(interval_s)
    return tracker.sample()


def format_status(status: dict[str, Any]) -> str:
    """The compact one-screen view for ``edge status`` and ``edge up``."""
    from broker.units import format_size

    lines = []
    disk = status["disk"]
    horizon = disk["retention_horizon_h"]
    lines.append(
        f"disk: {format_size(disk['data_bytes'])} data, {format_size(disk['free_bytes'])} free of "
        f"{format_size(disk['total_bytes'])}; writing {format_size(disk['write_bytes_per_s'])}/s; "
        f"horizon {'-' if horizon is None else f'{horizon:.1f} h'}"
    )
    if disk.get("events"):
        rolling = disk.get("rolling_horizon_h")
        lines.append(f"events: {disk['events']} pinning {format_size(disk['pinned_bytes'])}"
                     + ("" if rolling is None or horizon is None else
                        f"; rolling window now {rolling:.1f} h instead of {horizon:.1f} h"))
    if disk.get("pinned_deleted_bytes"):
        lines.append(f"EVENTS DAMAGED: {format_size(disk['pinned_deleted_bytes'])} of pinned records deleted by the "
                     "disk guard (disk critically full); see `edge events list`")
    if disk.get("full"):
        since = time.strftime("%H:%M:%S", time.localtime((disk.get("full_since_ns") or time.time_ns()) / 1e9))
        lines.append(f"DISK FULL since {since}: the broker refuses writes (drivers drop with disk_full) "
                     "until space is freed; reads go on")
    refused = {k: v for k, v in ((status.get("broker") or {}).get("stats") or {}).items()
               if k in REFUSAL_COUNTERS and v}
    if refused:
        lines.append("broker refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())))
    lines.append(f"{'TOPIC':<24} {'REC/S':>8} {'MB/S':>7} {'RECORDS':>10} {'SIZE':>10} {'GAPS':>5}")
    for name, t in sorted(status["topics"].items()):
        rps = "-" if t["records_per_s"] is None else f"{t['records_per_s']:.1f}"
        mbps = "-" if t["bytes_per_s"] is None else f"{t['bytes_per_s'] / 1e6:.2f}"
        gaps = "-" if t.get("gaps") is None else str(t["gaps"])
        line = f"{name:<24} {rps:>8} {mbps:>7} {t['records']:>10} {format_size(t['bytes']):>10} {gaps:>5}"
        if t.get("last_gap"):
            moment = time.strftime("%H:%M:%S", time.gmtime(t["last_gap"]["start_ns"] / 1e9))
            line += f"  last gap {t['last_gap']['length_ms'] / 1000:.1f} s at {moment} UTC"
        if t.get("open_gap_ms"):
            line += f"  STALLED {t['open_gap_ms'] / 1000:.1f} s"
        lines.append(line)
    if status["drivers"]:
        lines.append(f"{'SENSOR':<16} {'STATE':<12} {'HZ':>6} {'CAPTURED':>9} {'PUBLISHED':>9} {'DROPPED':>8}")
        for name, d in sorted(status["drivers"].items()):
            dropped = sum((d.get("dropped") or {}).values())
            lines.append(f"{name:<16} {d.get('state', '?'):<12} {d.get('rate_hz', 0):>6.1f} "
                         f"{d.get('captured', 0):>9} {d.get('published', 0):>9} {dropped:>8}")
            lidar_model = (d.get("details") or {}).get("lidar_model")
            if lidar_model:
                lines.append(f"  model {lidar_model.get('model')} ({lidar_model.get('decided_by')})")
            packets = (d.get("details") or {}).get("lidar_packets")
            if packets:
                lines.append(f"  packets {packets.get('received', 0)} received, {packets.get('lost', 0)} lost, "
                             f"{packets.get('out_of_order', 0)} out of order, "
                             f"{sum((packets.get('skipped') or {}).values())} skipped")
    lines.append(format_mirror(status.get("mirror") or mirror_condition(None, None, 0)))
    for group, g in sorted(status["groups"].items()):
        lines.append(f"group {group}: {g['members']} member(s), lag {g['lag']} records")
    return "\n".join(lines)


def format_mirror(mirror: dict[str, Any]) -> str:
    """The mirror line of `edge status`: always shown, never a stale "up"."""
    condition = mirror.get("condition", "?")
    since = mirror.get("condition_since_ns")
    text = f"mirror: {condition}"
    if since:
        text += f" since {time.strftime('%H:%M:%S', time.gmtime(since / 1e9))} UTC"
    if condition not in ("no report",):
        text += f", lag {mirror.get('lag_records', '?')} records"
    if mirror.get("condition_reason"):
        text += f" ({mirror['condition_reason']})"
    for name, stop in sorted((mirror.get("stopped_partitions") or {}).items()):
        text += f"\n  partition {name} stopped at offset {stop['offset']}: {stop['error']}"
    if mirror.get("lost_to_retention"):
        text += f"\n  lost to local retention before shipping: {mirror['lost_to_retention']} records"
    return text
