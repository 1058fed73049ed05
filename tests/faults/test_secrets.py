"""Secrets never leak: a mirror configured with a SASL password and a dead link logs its
failures, publishes its state and answers ``edge status`` without the password anywhere
(its log, any record of any topic, the status output)."""

from __future__ import annotations

import subprocess
import sys
import time

from broker.client import Admin, Consumer, Producer
from tests.support.broker_process import free_tcp_port

SECRET = "s3cr3t-Pa55word-do-not-leak"


def _all_values(endpoint: str) -> bytes:
    with Admin(endpoint) as admin:
        topics = admin.list_topics()
    consumer = Consumer(endpoint, max_wait_ms=50)
    out = []
    try:
        assignment = [(name, p["partition"]) for name, t in topics.items() for p in t["partitions"]]
        consumer.assign(assignment)
        consumer.seek_to_beginning()
        for _ in range(20):
            records = consumer.poll(0.2)
            if not records:
                break
            out += [bytes(r.value) + b"".join(bytes(v) for v in r.headers.values()) for r in records]
    finally:
        consumer.close()
    return b"\n".join(out)


def test_sasl_password_is_never_logged_published_or_shown(broker, tmp_path):
    with Producer(broker.endpoint) as producer:
        producer.send("camera.front", b"frame", headers={"encoding": "jpeg"}).result(10)
    config = tmp_path / "edge.toml"
    config.write_text(f"""
[vehicle]
id = "veh-secret"
[broker]
data_dir = "{broker.data_dir}"
[mirror]
bootstrap_servers = "127.0.0.1:{free_tcp_port()}"
topics = ["camera.*"]
[mirror.kafka]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanisms" = "PLAIN"
"sasl.username" = "veh-secret"
"sasl.password" = "{SECRET}"
""")
    log = tmp_path / "mirror.log"
    with open(log, "wb") as out:
        mirror = subprocess.Popen([sys.executable, "-m", "edge.cli", "mirror", "--config", str(config),
                                   "--endpoint", broker.endpoint, "--log-level", "DEBUG"],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(6.0)  # link-down retries, librdkafka's connection errors
    finally:
        stopping = time.monotonic()
        mirror.terminate()
        mirror.wait(60)
    # a SIGTERM while librdkafka waits for an unreachable destination's metadata is honoured
    # within a metadata slice (1 s), not after the 30 s metadata timeout (took 20 s before)
    assert time.monotonic() - stopping < 10, f"mirror took {time.monotonic() - stopping:.1f} s to stop"
    text = log.read_text(errors="replace")
    assert "mirror" in text and len(text) > 200, text  # it did log its failures
    assert SECRET not in text
    status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--config", str(config), "--endpoint",
                             broker.endpoint], capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0, status.stderr
    assert SECRET not in status.stdout + status.stderr
    assert SECRET.encode() not in _all_values(broker.endpoint)
