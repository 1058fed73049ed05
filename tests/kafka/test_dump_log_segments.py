"""Kafka's own segment reader (kafka.tools.DumpLogSegments, what ``kafka-dump-log.sh
--deep-iteration --print-data-log --files`` runs) reads our segment files without an error
and shows the records we wrote: offsets, CreateTime (capture time in ms), keys, values,
headers, and every codec; the batch CRCs it recomputes are valid."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from broker.records import CAPTURE_HEADER, encode_batch
from broker.storage import Storage
from broker.topic_config import TopicConfig
from tests.kafka.harness import kafka_libs

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")

CAPTURE_NS = 1_700_000_000_123_456_789


def dump(segment) -> str:
    run = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{kafka_libs()}/*", "kafka.tools.DumpLogSegments", "--deep-iteration",
         "--print-data-log", "--files", str(segment)],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_kafka_dump_log_reads_our_segments(tmp_path):
    storage = Storage(tmp_path / "data")
    storage.create_topic("t", TopicConfig(flush="os"))
    stamped = TopicConfig(flush="os", timestamp_type="LogAppendTime")
    storage.create_topic("appended", stamped)
    log = storage.log("t", 0)
    log.append(encode_batch([b"hello", b"world"], CAPTURE_NS, keys=[b"k1", None], headers=[{"sensor": "cam0"}, None]))
    for codec in ("zstd", "gzip", "lz4"):
        log.append(encode_batch([codec.encode() * 40] * 3, CAPTURE_NS + 5_000_000, codec=codec))
    log.append(encode_batch([b"%06d" % i for i in range(300)], CAPTURE_NS))  # 2- and 3-byte varints
    appended = storage.log("appended", 0).append(encode_batch([b"late"], CAPTURE_NS),
                                                 append_time_ns=2_000_000_000_000_000)
    storage.close()

    out = dump(tmp_path / "data" / "t" / "0" / "00000000000000000000.log")
    batches = re.findall(r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+).*compresscodec: (\w+).*isvalid: (\w+)",
                         out, re.M)
    assert batches == [("0", "1", "2", "none", "true"), ("2", "4", "3", "zstd", "true"),
                       ("5", "7", "3", "gzip", "true"), ("8", "10", "3", "lz4", "true"),
                       ("11", "310", "300", "none", "true")]
    records = re.findall(r"^\| offset: (\d+) CreateTime: (\d+) keySize: (-?\d+) valueSize: (\d+) "
                         r".*?headerKeys: \[([^\]]*)\]"
                         r"(?: key: (\S+))? payload: (\S*)$", out, re.M)
    assert len(records) == 311
    assert records[0] == ("0", "1700000000123", "2", "5", f"{CAPTURE_HEADER},sensor", "k1", "hello")
    assert records[1] == ("1", "1700000000123", "-1", "5", CAPTURE_HEADER, "", "world")
    assert records[2][1] == "1700000000128" and records[2][6] == "zstd" * 40
    assert [r[6] for r in records[11:]] == [f"{i:06d}" for i in range(300)]
    assert "Found" not in out and "error" not in out.lower()

    out = dump(tmp_path / "data" / "appended" / "0" / "00000000000000000000.log")
    assert appended.base_offset == 0
    assert re.search(r"^\| offset: 0 LogAppendTime: 2000000000 .*payload: late$", out, re.M), out
    assert "isvalid: true" in out
