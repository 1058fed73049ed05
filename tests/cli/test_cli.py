"""The ``edge`` CLI against a real broker: topics, produce, consume (formats, groups, --from)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker_process import BrokerProcess

EDGE = str(Path(sys.executable).parent / "edge")


@pytest.fixture
def cli(data_dir):
    with BrokerProcess(data_dir) as broker:
        env = {**os.environ, "EDGE_ENDPOINT": broker.endpoint}

        def run(*args, stdin: bytes | None = None, check: bool = True):
            result = subprocess.run([EDGE, *args], input=stdin, capture_output=True, env=env, timeout=60, check=False)
            if check and result.returncode != 0:
                raise AssertionError(f"edge {' '.join(args)} -> {result.returncode}\n{result.stderr.decode()}")
            return result

        run.endpoint = broker.endpoint
        yield run


def test_topics_create_describe_list_delete(cli):
    out = cli("topics", "create", "cam.front", "--partitions", "3", "--set", "codec=zstd", "--set", "retention_age=2h")
    assert b"3 partition" in out.stdout and out.stderr == b""
    described = json.loads(cli("topics", "describe", "cam.front", "--json").stdout)
    assert described["config"]["codec"] == "zstd" and described["config"]["retention_age"] == "2h"
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert "cam.front" in json.loads(cli("topics", "list", "--json").stdout)
    bad = cli("topics", "create", "x", "--set", "codec=lz5", check=False)
    assert bad.returncode == 2 and b"codec" in bad.stderr
    cli("topics", "delete", "cam.front")
    assert "cam.front" not in json.loads(cli("topics", "list", "--json").stdout)
    missing = cli("topics", "describe", "cam.front", check=False)
    assert missing.returncode == 2 and b"unknown topic" in missing.stderr


def test_topics_create_config_key_value_is_a_deprecated_alias_of_set(cli):
    old = cli("topics", "create", "cam.old", "--config", "codec=zstd", "--set", "retention_age=2h")
    assert old.stderr.decode().splitlines() == [
        "edge topics create: --config KEY=VALUE is deprecated, use --set KEY=VALUE"]
    described = json.loads(cli("topics", "describe", "cam.old", "--format", "json").stdout)
    assert described["config"]["codec"] == "zstd" and described["config"]["retention_age"] == "2h"


def test_produce_lines_and_file_then_consume_json(cli, tmp_path):
    result = cli("produce", "t", "--key", "k1", "--header", "sensor=cli", "--acks", "durable",
                 stdin=b"one\ntwo\nthree\n")
    assert b"produced 3 record(s) to t partition 0 offsets 0..2" in result.stderr
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    cli("produce", "t", "--value-file", str(blob))
    lines = [json.loads(line) for line in cli("consume", "t", "--limit", "4").stdout.splitlines()]
    assert [line["value"] for line in lines[:3]] == ["one", "two", "three"]
    assert lines[0]["key"] == "k1" and lines[0]["headers"] == {"sensor": "cli"} and lines[0]["size"] == 3
    assert lines[3]["value"] is None and len(lines[3]["value_b64"]) > 300 and lines[3]["offset"] == 3
    values = cli("consume", "t", "--from", "1", "--limit", "2", "--format", "value").stdout
    assert values == b"two\nthree\n"
    recent = cli("consume", "t", "--from", "-10m", "--timeout", "1", "--format", "value").stdout
    assert recent.startswith(b"one\n")
    assert cli("consume", "t", "--from", "latest", "--timeout", "0.5").stdout == b""


def test_consume_group_continues_where_it_stopped(cli):
    cli("produce", "g", stdin=b"a\nb\nc\nd\n")
    first = cli("consume", "g", "--group", "readers", "--limit", "2", "--format", "value").stdout
    second = cli("consume", "g", "--group", "readers", "--timeout", "1", "--format", "value").stdout
    assert first == b"a\nb\n" and second == b"c\nd\n"


def test_produce_fails_clearly_without_broker(tmp_path):
    env = {**os.environ, "EDGE_ENDPOINT": f"ipc://{tmp_path}/none.sock"}
    result = subprocess.run([EDGE, "produce", "t", "--timeout", "1"], input=b"x\n",
                            capture_output=True, env=env, timeout=30, check=False)
    assert result.returncode == 1
    assert b"not acknowledged" in result.stderr and b"not reachable" in result.stderr
