"""The Kafka listener's counters (native Metadata ``broker.kafka``) reach /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from edge.api.metrics import SnapshotCollector, render


def test_kafka_counters_are_exported():
    broker = {"kafka": {"listen": "127.0.0.1:9092", "closed_bad_frame_size": 2, "requests": 40,
                        "connections_open": 3}}
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: {"disk": {"free_bytes": 1}, "broker": broker}))
    samples = {s.name: s.value for f in text_string_to_metric_families(render(registry).decode()) for s in f.samples}
    assert samples["edge_broker_kafka_closed_bad_frame_size_total"] == 2
    assert samples["edge_broker_kafka_requests_total"] == 40
    assert samples["edge_broker_kafka_connections_open"] == 3
    assert not any("listen" in name for name in samples)
