"""A data directory written by format v1 (the code before Kafka batches) opens after the
upgrade to v2 with every record, offset, key, header and capture time where it was.

``data/v1`` was written by the v1 code (commit 2091722: ``Storage``, ``encode_batch``):
topic ``plain`` (2 partitions, 1 KiB segments: three segments each, records with and
without keys and headers) and ``packed`` (codec zstd); ``expected.json`` lists every record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from broker.records import CAPTURE_HEADER, decode_batches, encode_batch, iter_batches
from broker.storage import Storage
from broker.storage.v1_upgrade import is_v1_segment, upgrade_partition

FIXTURE = Path(__file__).parent / "data" / "v1"


@pytest.fixture
def v1_dir(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    return data


def _all_records(storage: Storage, topic: str, partition: int):
    log = storage.log(topic, partition)
    out, offset = [], log.log_start_offset
    while offset < log.next_offset:
        records = decode_batches(log.read(offset, 1 << 20), min_offset=offset)
        out += records
        offset = records[-1].offset + 1
    return out


def test_v1_directory_opens_with_no_record_lost(v1_dir):
    expected = json.loads((v1_dir / "expected.json").read_text())
    (v1_dir / "plain" / "1" / ".clean-shutdown").unlink()  # one partition after a crash
    assert is_v1_segment(v1_dir / "plain" / "0" / "00000000000000000000.log")
    storage = Storage(v1_dir)
    try:
        got = []
        for topic, partitions in (("plain", 2), ("packed", 1)):
            for p in range(partitions):
                for r in _all_records(storage, topic, p):
                    got.append({"topic": topic, "partition": p, "offset": r.offset, "ts": r.timestamp,
                                "key": None if r.key is None else r.key.hex(), "value": bytes(r.value).hex(),
                                "headers": {k: v.hex() for k, v in r.headers.items()}})
        assert sorted(got, key=lambda r: (r["topic"], r["partition"], r["offset"])) == sorted(
            expected, key=lambda r: (r["topic"], r["partition"], r["offset"]))
        assert not any(is_v1_segment(p) for p in v1_dir.glob("*/*/*.log"))
        # the packed topic stays compressed; appends continue the offsets
        assert all(h.codec == 4 for h, _ in iter_batches(storage.log("packed", 0).read(0, 1 << 20)))
        log = storage.log("plain", 0)
        before = log.next_offset
        assert log.append(encode_batch([b"after"], 5)).base_offset == before
        # the time index was rebuilt: lookups at record precision still work
        first = min(r["ts"] for r in expected if r["topic"] == "plain" and r["partition"] == 0)
        assert log.offset_for_time(first + 1) == 1
    finally:
        storage.close()


def test_interrupted_upgrade_finishes_on_the_next_start(v1_dir):
    part = v1_dir / "plain" / "0"
    mtime = (part / "00000000000000000000.log").stat().st_mtime_ns
    upgrade_partition(part, "plain", 0)
    assert (part / "00000000000000000000.log").stat().st_mtime_ns == mtime  # retention by age unchanged
    # as if a crash stopped the upgrade after the first segment: restore a v1 segment
    shutil.copy(FIXTURE / "plain" / "0" / "00000000000000000024.log", part / "00000000000000000024.log")
    assert is_v1_segment(part / "00000000000000000024.log")
    storage = Storage(v1_dir)
    try:
        records = _all_records(storage, "plain", 0)
        assert [r.offset for r in records] == list(range(36))
        assert all(CAPTURE_HEADER not in r.headers for r in records)
    finally:
        storage.close()
