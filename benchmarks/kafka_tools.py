"""Kafka's own perf tools, run against any Kafka-protocol peer with the same arguments.

The classes behind ``kafka-producer-perf-test.sh``, ``kafka-consumer-perf-test.sh`` and
``kafka-e2e-latency.sh`` (``org.apache.kafka.tools.ProducerPerformance``,
``ConsumerPerformance``, ``EndToEndLatency``), from the jars tests/kafka/harness.py fetched;
each run is its own JVM with the flags ``kafka-run-class.sh`` gives the tools (G1, 20 ms pause
target), heap raised from 256 MiB to 512 MiB so 8 MB records fit the producer's buffer.

Producer settings, identical for every peer (``PRODUCER_PROPS``): acks=all, linger.ms=5 (the
4.x default), batch.size=1 MiB, compression none, max.request.size above the largest record.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import perfparse
from .systems import MAX_MESSAGE_BYTES

MiB = 1024 * 1024
JVM_FLAGS = ["-Xmx512M", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
PRODUCER_PROPS = {"acks": "all", "linger.ms": "5", "batch.size": str(MiB), "compression.type": "none",
                  "max.request.size": str(MAX_MESSAGE_BYTES + MiB), "buffer.memory": str(128 * MiB)}
CONSUMER_PROPS = {"fetch.max.bytes": str(64 * MiB), "max.partition.fetch.bytes": str(MAX_MESSAGE_BYTES + MiB)}
TOOL_TIMEOUT_S = 300.0


class ToolRunError(RuntimeError):
    """A perf tool exited non-zero or timed out; the message carries its last output."""


def _run(libs: Path, main_class: str, args: list[str], timeout: float = TOOL_TIMEOUT_S) -> str:
    command = ["java", *JVM_FLAGS, "-cp", f"{libs}/*", main_class, *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolRunError(f"{main_class.rsplit('.', 1)[-1]} timed out after {timeout:.0f} s") from exc
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise ToolRunError(f"{main_class.rsplit('.', 1)[-1]} exited with {result.returncode}: {output[-600:]}")
    return output


def _props_file(directory: Path, name: str, props: dict[str, str]) -> Path:
    path = directory / name
    path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
    return path


def producer_perf(libs: Path, bootstrap: str, topic: str, records: int, record_bytes: int) -> dict[str, float]:
    props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    output = _run(libs, "org.apache.kafka.tools.ProducerPerformance",
                  ["--topic", topic, "--num-records", str(records), "--record-size", str(record_bytes),
                   "--throughput", "-1", "--producer-props", *props])
    return perfparse.parse_producer_perf(output)


def consumer_perf(libs: Path, work: Path, bootstrap: str, topic: str, records: int) -> dict[str, float]:
    config = _props_file(work, "consumer.properties", CONSUMER_PROPS)
    output = _run(libs, "org.apache.kafka.tools.ConsumerPerformance",
                  ["--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(records),
                   "--timeout", "60000", "--consumer.config", str(config)])
    return perfparse.parse_consumer_perf(output)


def e2e_latency(libs: Path, bootstrap: str, topic: str, records: int, record_bytes: int) -> dict[str, float]:
    """One record at a time: send (acks=all), then poll until it is back (the tool's method)."""
    output = _run(libs, "org.apache.kafka.tools.EndToEndLatency",
                  [bootstrap, topic, str(records), "all", str(record_bytes)])
    return perfparse.parse_e2e_latency(output)
