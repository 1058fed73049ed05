"""Admin client: topics, offsets, groups and broker metadata (synchronous requests)."""

from __future__ import annotations

from typing import Any

from .. import protocol_messages as M
from .connection import Connection


class Admin:
    def __init__(self, endpoint: str, *, timeout_s: float = 10.0):
        self.connection = Connection(endpoint, timeout_s=timeout_s)

    def _call(self, request: M.Request[M.ReplyT]) -> M.ReplyT:
        return self.connection.call(request)

    def ping(self) -> dict[str, Any]:
        return self._call(M.PingRequest()).to_meta()

    def metadata(self, topics: list[str] | None = None) -> dict[str, Any]:
        """{"topics": {name: {"config", "partitions": [...]}}, "broker": {...}}."""
        return self._call(M.MetadataRequest(topics=topics)).to_meta()

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
        return self._call(M.CreateTopicRequest(topic=name, config=overrides, if_not_exists=if_not_exists)).to_meta()

    def delete_topic(self, name: str) -> None:
        self._call(M.DeleteTopicRequest(topic=name))

    def configure_topic(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return self._call(M.ConfigureTopicRequest(topic=name, config=config)).config

    def list_offset(self, topic: str, partition: int, spec: str = "latest", timestamp: int | None = None) -> int:
        """Offset for ``spec`` earliest / latest / timestamp (first batch with capture time
        >= timestamp; the log end when there is none)."""
        return self._call(M.ListOffsetsRequest(topic=topic, partition=partition, spec=spec,
                                               timestamp=None if timestamp is None else int(timestamp))).offset

    def list_groups(self) -> dict[str, Any]:
        return self._call(M.ListGroupsRequest()).groups

    def group_offsets(self, group: str) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._call(M.FetchOffsetsRequest(group=group)).offsets}

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._call(M.CommitOffsetsRequest(group=group, offsets=tuple((t, p, o) for (t, p), o in offsets.items())))

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
        return self._call(M.PinSetRequest(id=pin_id, label=label, topics=tuple(topics), start_ns=int(start_ns),
                                          end_ns=int(end_ns))).pin

    def clear_pin(self, pin_id: str) -> None:
        self._call(M.PinClearRequest(id=pin_id))

    def list_pins(self) -> dict[str, Any]:
        """``{"pins": [...], "pinned_bytes", "pinned_deleted_bytes", "time_ns"}``."""
        return self._call(M.PinListRequest()).to_meta()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
