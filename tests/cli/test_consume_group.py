"""``edge consume`` as Kafka's console consumer (issue 27): it waits out a broker restart,
says on stderr what the log no longer holds, and with ``--group`` is a real group member:
two at once share the partitions (disjoint, complete), commits never go back, Ctrl-C commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.client import Admin
from tests.integration.readers_support import delete_by_retention, produce_numbers
from tests.support.broker_process import BrokerProcess

EDGE = str(Path(sys.executable).parent / "edge")


@pytest.fixture
def broker(data_dir):
    with BrokerProcess(data_dir) as process:
        yield process


def consume(broker, *args, **popen):
    return subprocess.Popen([EDGE, "consume", *args, "--format", "value"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "EDGE_ENDPOINT": broker.endpoint}, **popen)


def numbers(stdout: bytes) -> list[int]:
    return [int(line) for line in stdout.splitlines()]


@pytest.mark.parametrize("group", [[], ["--group", "g"]], ids=["assigned", "group"])
def test_consume_survives_a_broker_restart(broker, group):
    produce_numbers(broker.endpoint, "r", range(500))
    proc = consume(broker, "r", "--max-messages", "1000", "--timeout", "30", *group)
    first = proc.stdout.readline()  # it is reading (a broker away at start-up is an error: rc 2)
    broker.kill()
    time.sleep(0.3)
    broker.start()
    produce_numbers(broker.endpoint, "r", range(500, 1000))
    with proc:  # read through the same buffered reader as the first line; closes the pipes
        out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 0, err.decode()
    assert numbers(first + out) == list(range(1000))
    if group:
        with Admin(broker.endpoint) as admin:
            assert admin.group_offsets("g") == {("r", 0): 1000}


def test_consume_from_an_offset_retention_deleted_says_so(data_dir):
    with BrokerProcess(data_dir) as broker:
        with Admin(broker.endpoint) as admin:
            admin.create_topic("old", config={"segment_bytes": 2048})
        produce_numbers(broker.endpoint, "old", range(1000))
        with Admin(broker.endpoint) as admin:
            admin.commit_offsets("g", {("old", 0): 5})
        broker.stop()
        log_start = delete_by_retention(data_dir, "old", keep_bytes=4096)
        broker.start()
        for args in (["--from", "5"], ["--group", "g"]):
            out, err = consume(broker, "old", "--timeout", "1", *args).communicate(timeout=30)
            assert numbers(out) == list(range(log_start, 1000))
            assert f"offsets 5..{log_start - 1} ({log_start - 5} records) were deleted".encode() in err, err
        strict = consume(broker, "old", "--from", "5", "--offset-reset", "error", "--timeout", "1")
        out, err = strict.communicate(timeout=30)
        assert strict.returncode == 3 and out == b"" and b"deleted before they were read" in err


def test_two_group_consumers_at_once_share_the_partitions(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("shared", partitions=4)
    first = consume(broker, "shared", "--group", "g", "--timeout", "3")
    second = consume(broker, "shared", "--group", "g", "--timeout", "3")
    for p in range(4):  # records come while the two join and rebalance
        produce_numbers(broker.endpoint, "shared", range(p * 1000, p * 1000 + 500), partition=p)
    with Admin(broker.endpoint) as admin:  # both joined and the hand-over done: each reads some
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            members = admin.list_groups().get("g", {}).get("members", {})
            if len(members) == 2 and all(members.values()):
                break
            time.sleep(0.1)
    for p in range(4):
        produce_numbers(broker.endpoint, "shared", range(p * 1000 + 500, p * 1000 + 1000), partition=p)
    out_a, err_a = first.communicate(timeout=60)
    out_b, err_b = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err_a + err_b).decode()
    a, b = numbers(out_a), numbers(out_b)
    everything = {p * 1000 + i for p in range(4) for i in range(1000)}
    assert not set(a) & set(b), f"{len(set(a) & set(b))} records printed by both"
    assert len(a) + len(b) == len(everything) and set(a) | set(b) == everything
    print(f"two group members printed {len(a)} + {len(b)} of {len(everything)}")
    assert a and b, "the partitions were not shared"
    with Admin(broker.endpoint) as admin:
        assert admin.group_offsets("g") == {("shared", p): 1000 for p in range(4)}


def test_ctrl_c_commits_what_was_printed(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("ctl", partitions=2)
    for p in range(2):
        produce_numbers(broker.endpoint, "ctl", range(p * 1000, p * 1000 + 500), partition=p)
    proc = consume(broker, "ctl", "--group", "g")
    lines = [proc.stdout.readline() for _ in range(1000)]
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert len(numbers(b"".join(lines) + rest)) == 1000
    with Admin(broker.endpoint) as admin:
        assert admin.group_offsets("g") == {("ctl", 0): 500, ("ctl", 1): 500}
    again = consume(broker, "ctl", "--group", "g", "--timeout", "1")
    assert again.communicate(timeout=30)[0] == b""
    # --max-messages commits only what it printed; the commit moves forward only
    produce_numbers(broker.endpoint, "ctl", range(5000, 5100), partition=0)
    out, _ = consume(broker, "ctl", "--group", "g", "--max-messages", "30").communicate(timeout=30)
    assert numbers(out) == list(range(5000, 5030))
    with Admin(broker.endpoint) as admin:
        assert admin.group_offsets("g") == {("ctl", 0): 530, ("ctl", 1): 500}
