"""Admin client: topics, offsets, groups and broker metadata (synchronous requests)."""

from __future__ import annotations

from typing import Any

from .. import protocol as P
from .connection import Connection


class Admin:
    def __init__(self, endpoint: str, *, timeout_s: float = 10.0):
        self.connection = Connection(endpoint, timeout_s=timeout_s)

    def _call(self, kind: int, meta: dict[str, Any]) -> dict[str, Any]:
        return self.connection.request(kind, meta).meta

    def ping(self) -> dict[str, Any]:
        return self._call(P.PING, {})

    def metadata(self, topics: list[str] | None = None) -> dict[str, Any]:
        """{"topics": {name: {"config", "partitions": [...]}}, "broker": {...}}."""
        return self._call(P.METADATA, {"topics": topics})

    def list_topics(self) -> dict[str, Any]:
        topics: dict[str, Any] = self.metadata()["topics"]
        return topics

    def describe_topic(self, name: str) -> dict[str, Any]:
        topic: dict[str, Any] = self.metadata([name])["topics"][name]
        return topic

    def create_topic(self, name: str, partitions: int | None = None, config: dict[str, Any] | None = None,
                     *, if_not_exists: bool = False) -> dict[str, Any]:
        overrides = dict(config or {})
        if partitions is not None:
            overrides["partitions"] = partitions
        return self._call(P.CREATE_TOPIC, {"topic": name, "config": overrides, "if_not_exists": if_not_exists})

    def delete_topic(self, name: str) -> None:
        self._call(P.DELETE_TOPIC, {"topic": name})

    def configure_topic(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        applied: dict[str, Any] = self._call(P.CONFIGURE_TOPIC, {"topic": name, "config": config})["config"]
        return applied

    def list_offset(self, topic: str, partition: int, spec: str = "latest", timestamp: int | None = None) -> int:
        """Offset for ``spec`` earliest / latest / timestamp (first batch with capture time
        >= timestamp; the log end when there is none)."""
        meta: dict[str, Any] = {"topic": topic, "partition": partition, "spec": spec}
        if timestamp is not None:
            meta["timestamp"] = int(timestamp)
        return int(self._call(P.LIST_OFFSETS, meta)["offset"])

    def list_groups(self) -> dict[str, Any]:
        groups: dict[str, Any] = self._call(P.LIST_GROUPS, {})["groups"]
        return groups

    def group_offsets(self, group: str) -> dict[tuple[str, int], int]:
        raw = self._call(P.FETCH_OFFSETS, {"group": group})["offsets"]
        return {(t, p): o for t, p, o in raw}

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._call(P.COMMIT_OFFSETS, {"group": group, "offsets": [[t, p, o] for (t, p), o in offsets.items()]})

    def group_lag(self, group: str) -> dict[tuple[str, int], dict[str, int]]:
        """Per partition: committed offset, log end and lag (records)."""
        committed = self.group_offsets(group)
        topics = self.list_topics()
        out = {}
        for (topic, partition), offset in committed.items():
            parts = topics.get(topic, {}).get("partitions", [])
            if partition < len(parts):
                end = parts[partition]["next_offset"]
                out[(topic, partition)] = {"committed": offset, "end": end, "lag": max(0, end - offset)}
        return out

    def set_pin(self, pin_id: str, topics: list[str], start_ns: int, end_ns: int, label: str = "") -> dict[str, Any]:
        """Pin ``topics`` for the window (an event; broker/storage/pins.py): the pin's JSON."""
        pin: dict[str, Any] = self._call(P.PINS, {"action": "set", "id": pin_id, "label": label,
                                                  "topics": list(topics), "start_ns": int(start_ns),
                                                  "end_ns": int(end_ns)})["pin"]
        return pin

    def clear_pin(self, pin_id: str) -> None:
        self._call(P.PINS, {"action": "clear", "id": pin_id})

    def list_pins(self) -> dict[str, Any]:
        """``{"pins": [...], "pinned_bytes", "pinned_deleted_bytes", "time_ns"}``."""
        return self._call(P.PINS, {"action": "list"})

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
