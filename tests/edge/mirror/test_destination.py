"""edge.mirror.destination: the settings the mirror's consumers get."""

from __future__ import annotations

from edge.mirror.destination import consumer_settings, kafka_settings


def test_consumers_do_not_get_producer_only_settings():
    settings = kafka_settings("k1:9092", {"compression.type": "none", "linger.ms": 5, "security.protocol": "SSL",
                                          "ssl.ca.location": "/etc/ca.pem", "socket.timeout.ms": 10_000})
    assert settings["compression.type"] == "none"
    consumer = consumer_settings(settings)
    assert consumer.pop("logger").name == "librdkafka"  # librdkafka's log folded into ours (edge/third_party_logs.py)
    assert consumer == {"bootstrap.servers": "k1:9092", "security.protocol": "SSL",
                        "ssl.ca.location": "/etc/ca.pem", "socket.timeout.ms": 10_000}
