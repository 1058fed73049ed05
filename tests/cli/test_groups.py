"""``edge groups list|describe|reset`` and ``edge produce --timestamp`` against a real broker."""

from __future__ import annotations

import json

from broker.client import Admin, Consumer
from tests.cli.test_cli import cli  # noqa: F401 - the broker-backed CLI fixture

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
HOUR = 3_600_000_000_000


def endpoint_of(cli) -> str:  # noqa: F811
    return cli.endpoint


def test_produce_timestamp_sets_the_record_time(cli):  # noqa: F811
    cli("produce", "t", "--timestamp", "2026-01-01T00:00:00Z", stdin=b"a\nb\n")
    cli("produce", "t", "--timestamp", str(T0 + HOUR), stdin=b"c\n")
    lines = [json.loads(line) for line in cli("consume", "t", "--limit", "3").stdout.splitlines()]
    assert [r["timestamp"] for r in lines] == [T0, T0, T0 + HOUR]
    bad = cli("produce", "t", "--timestamp", "yesterday", stdin=b"x\n", check=False)
    assert bad.returncode == 2 and b"invalid time 'yesterday'" in bad.stderr and b"Traceback" not in bad.stderr


def test_groups_lag_and_reset(cli):  # noqa: F811
    cli("produce", "t", "--timestamp", str(T0), stdin=b"a\nb\nc\n")
    cli("produce", "t", "--timestamp", str(T0 + HOUR), stdin=b"d\ne\n")
    endpoint = endpoint_of(cli)
    with Admin(endpoint) as admin:
        admin.commit_offsets("readers", {("t", 0): 2})
    listed = json.loads(cli("groups", "list", "--format", "json").stdout)
    assert listed["readers"] == {"members": 0, "topics": ["t"], "lag": 3}
    described = json.loads(cli("groups", "describe", "readers", "--json").stdout)  # the old alias still works
    assert described["partitions"] == [{"topic": "t", "partition": 0, "committed": 2, "end": 5, "lag": 3,
                                        "member": None}]
    table = cli("groups", "describe", "readers").stdout.decode()
    assert "lag 3" in table and "t" in table.splitlines()[2]

    dry = cli("groups", "reset", "readers", "--to", "earliest", "--dry-run").stdout.decode()
    assert "dry run" in dry and json.loads(cli("groups", "describe", "readers", "--format", "json").stdout)[
        "partitions"][0]["committed"] == 2

    def committed_after(*args) -> int:
        cli("groups", "reset", "readers", *args)
        return json.loads(cli("groups", "describe", "readers", "--format", "json").stdout)["partitions"][0]["committed"]

    assert committed_after("--to", "latest") == 5
    assert committed_after("--to", "earliest") == 0
    assert committed_after("--to", "2026-01-01T00:30:00Z") == 3  # first record at or after the time
    assert committed_after("--to", "1", "--topic", "t") == 1
    assert committed_after("--to", "999") == 5  # an offset past the end is clamped to it

    unknown = cli("groups", "describe", "nobody", check=False)
    assert unknown.returncode == 2 and b"no consumer group 'nobody'" in unknown.stderr
    bad_time = cli("groups", "reset", "readers", "--to", "someday", check=False)
    assert bad_time.returncode == 2 and b"invalid time 'someday'" in bad_time.stderr


def test_reset_is_refused_while_the_group_has_members(cli):  # noqa: F811
    cli("produce", "t", stdin=b"a\nb\n")
    consumer = Consumer(endpoint_of(cli), group="live")
    try:
        consumer.subscribe(["t"])
        consumer.commit({("t", 0): 1})
        refused = cli("groups", "reset", "live", "--to", "earliest", check=False)
        assert refused.returncode == 1 and b"live member" in refused.stderr
        assert len(refused.stderr.decode().strip().splitlines()) == 1
        assert cli("groups", "reset", "live", "--to", "earliest", "--dry-run").returncode == 0
        with Admin(consumer.endpoint) as admin:
            assert admin.group_offsets("live") == {("t", 0): 1}  # nothing moved
    finally:
        consumer.close()
