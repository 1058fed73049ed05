"""librdkafka's and uvicorn's logs folded into ours, repeats rate-limited with a count."""

from __future__ import annotations

import logging
import time

import pytest

from edge.third_party_logs import ThirdPartyLogFold, librdkafka_logger


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_are_folded_with_a_count(caplog):
    clock = Clock()
    logger = logging.getLogger("test.thirdparty")
    fold = ThirdPartyLogFold("librdkafka", interval_s=30, clock=clock)
    logger.addFilter(fold)
    try:
        with caplog.at_level(logging.INFO, logger="test.thirdparty"):
            for i in range(578):  # the 578 lines in 15 s
                clock.now = i * 15 / 578
                logger.error("%s [%s] %s", "FAIL", f"rdkafka#producer-{1 + i % 3}",
                             f"127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused "
                             f"(after {i % 7}ms in state CONNECT, {i} identical error(s) suppressed)")
            logger.warning("%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "Configuration property x is unknown")
            clock.now = 31
            logger.error("%s [%s] %s", "FAIL", "rdkafka#producer-1",
                         "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused "
                         "(after 0ms in state CONNECT, 1 identical error(s) suppressed)")
    finally:
        logger.removeFilter(fold)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("event=third_party_log library=librdkafka message=") and "Connect to" in lines[0]
    assert "CONFWARN" in lines[1] and "suppressed" not in lines[1]  # a different message passes at once
    assert lines[2].endswith("suppressed=577")


def test_librdkafka_logger_is_installed_once_and_takes_client_logs():
    logger = librdkafka_logger()
    assert librdkafka_logger() is logger
    assert sum(isinstance(f, ThirdPartyLogFold) for f in logger.filters) == 1


def test_a_real_librdkafka_client_logs_through_us(caplog):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    logger = logging.getLogger("test.thirdparty.rdkafka")
    logger.addFilter(ThirdPartyLogFold("librdkafka", interval_s=30))
    with caplog.at_level(logging.DEBUG, logger="test.thirdparty.rdkafka"):
        producer = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", "logger": logger,
                                             "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 10,
                                             "socket.connection.setup.timeout.ms": 1000})
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            producer.poll(0.1)
        producer.flush(0)
    lines = [r.getMessage() for r in caplog.records if r.name == "test.thirdparty.rdkafka"]
    assert lines and all(line.startswith("event=third_party_log library=librdkafka") for line in lines)
    # hundreds of reconnect attempts in 3 s: a few distinct lines, not one per attempt
    assert len(lines) <= 6, lines
