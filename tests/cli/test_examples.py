"""examples/ run against a real broker, as docs/CLIENT.md shows them (every example is run
here: a new file in examples/ fails this test until it is added)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from broker.client import Admin
from tests.support.broker_process import BrokerProcess, free_tcp_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_HERE = {"producer.py", "consumer.py", "kafka_producer_consumer.py"}


def run_example(name: str, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGE_ENDPOINT": endpoint}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stderr}"
    return done


def test_every_example_is_run_here():
    assert {p.name for p in EXAMPLES.glob("*.py")} == RUN_HERE


def test_producer_then_consumer_in_a_group(data_dir):
    with BrokerProcess(data_dir) as broker:
        produced = run_example("producer.py", broker.endpoint, "--topic", "demo", "--count", "6").stdout.split("\n")
        acked = sorted((int(p), int(o)) for p, o, _ in (line.split() for line in produced if line))
        assert len(acked) == 6 and len(set(acked)) == 6
        first = run_example("consumer.py", broker.endpoint, "--topic", "demo", "--max-messages", "4",
                            "--timeout", "3").stdout.splitlines()
        rest = run_example("consumer.py", broker.endpoint, "--topic", "demo", "--timeout", "1.5").stdout.splitlines()
        read = sorted((int(line.split()[0]), int(line.split()[1])) for line in first + rest)
        assert len(first) == 4 and read == acked  # the second run continued where the group committed
        assert all(line.split()[3] == "reading" for line in first + rest)


def test_confluent_kafka_example_against_the_kafka_listener(data_dir):
    bootstrap = f"127.0.0.1:{free_tcp_port()}"
    with BrokerProcess(data_dir, extra_args=["--kafka-listen", bootstrap]) as broker:
        lines = run_example("kafka_producer_consumer.py", broker.endpoint, "--bootstrap", bootstrap,
                            "--topic", "kdemo", "--count", "6", "--timeout", "3").stdout.splitlines()
        produced = sorted((int(w[1]), int(w[2])) for w in (line.split() for line in lines) if w[0] == "produced")
        consumed = [line.split() for line in lines if line.startswith("consumed")]
        assert len(produced) == 6 and len(set(produced)) == 6
        assert sorted((int(w[1]), int(w[2])) for w in consumed) == produced
        assert all(w[4] == "reading" for w in consumed)
        with Admin(broker.endpoint) as native:  # the group's commits are in the native offset store
            committed = native.group_offsets("demo-readers")
        ends = {}
        for partition, offset in produced:
            ends[("kdemo", partition)] = max(ends.get(("kdemo", partition), 0), offset + 1)
        assert committed == ends
