"""``edge consume`` over several topics and patterns, merged by capture time when asked;
a bad --from is refused before anything is asked of the broker."""

from __future__ import annotations

import json

from broker.client import Producer
from tests.cli.test_cli import cli  # noqa: F401 - the broker-backed CLI fixture

T0 = 1_767_225_600_000_000_000


def produce_interleaved(endpoint: str) -> None:
    """camera.a and camera.b (2 partitions) and lidar.c, times interleaved across them."""
    with Producer(endpoint, acks="durable") as producer:
        futures = []
        for i in range(12):
            topic = ("camera.a", "camera.b", "lidar.c")[i % 3]
            partition = (i // 3) % 2 if topic == "camera.b" else 0
            futures.append(producer.send(topic, f"r{i}".encode(), partition=partition, timestamp_ns=T0 + i))
        for future in futures:
            future.result(30)


def test_patterns_and_merge_by_time(cli):  # noqa: F811
    cli("topics", "create", "camera.b", "--partitions", "2")
    produce_interleaved(cli.endpoint)
    printed = cli("consume", "camera.*", "--include", "lidar.*", "--merge-by-time", "--timeout", "1").stdout
    merged = [json.loads(line) for line in printed.splitlines()]
    assert [r["value"] for r in merged] == [f"r{i}" for i in range(12)]
    assert {r["topic"] for r in merged} == {"camera.a", "camera.b", "lidar.c"}
    some = cli("consume", "camera.a", "lidar.c", "--timeout", "1", "--format", "value").stdout.split()
    assert sorted(some) == sorted(f"r{i}".encode() for i in range(12) if i % 3 != 1)
    limited = cli("consume", "camera.*", "lidar.c", "--merge-by-time", "--max-messages", "5", "--format",
                  "value").stdout.split()
    assert limited == [b"r0", b"r1", b"r2", b"r3", b"r4"]


def test_merge_in_a_group_commits_only_what_was_printed(cli):  # noqa: F811
    cli("topics", "create", "camera.b", "--partitions", "2")
    produce_interleaved(cli.endpoint)
    first = cli("consume", "camera.*", "lidar.c", "--group", "m", "--merge-by-time", "--max-messages", "4",
                "--format", "value").stdout.split()
    rest = cli("consume", "camera.*", "lidar.c", "--group", "m", "--timeout", "1.5", "--format", "value").stdout.split()
    assert first == [b"r0", b"r1", b"r2", b"r3"]
    assert sorted(first + rest) == sorted(f"r{i}".encode() for i in range(12))  # none lost, none twice


def test_bad_topic_arguments(cli):  # noqa: F811
    cli("produce", "t", stdin=b"x\n")
    cli("produce", "u", stdin=b"y\n")
    nothing = cli("consume", "radar.*", "--timeout", "0.5", check=False)
    assert nothing.returncode == 2 and b"no topic matches 'radar.*'" in nothing.stderr
    two = cli("consume", "t", "u", "--partition", "0", check=False)
    assert two.returncode == 2 and b"--partition needs exactly one topic" in two.stderr
    yesterday = cli("consume", "t", "--from", "yesterday", check=False)
    assert yesterday.returncode == 2 and b"invalid time 'yesterday'" in yesterday.stderr
    assert len(yesterday.stderr.decode().strip().splitlines()) == 1
