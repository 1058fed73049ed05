"""A full disk: producers get a clear "disk full" error, reads keep working, nothing is left
corrupt, and the disk guard frees space by policy so that writes resume."""

from __future__ import annotations

import os
import shutil

from broker.client import Admin, Consumer, Producer
from broker.errors import DiskFullError
from broker.storage import Storage
from tests.support.broker_process import BrokerProcess

CONFIG = """
[broker]
data_dir = "{data}"
[broker.defaults]
segment_bytes = "1MiB"
flush = "batch"
[broker.disk_guard]
min_free = "{min_free}"
critical_free = "{critical}"
"""


def write_config(path, data, min_free, critical):
    path.write_text(CONFIG.format(data=data, min_free=min_free, critical=critical))
    return path


def fill(endpoint, topic, value, limit=400):
    """Produce one record at a time until the broker says the disk is full."""
    acked, error = [], None
    with Producer(endpoint, linger_ms=0, acks="written", request_timeout_s=5) as producer:
        for i in range(limit):
            try:
                acked.append(producer.send(topic, value + i.to_bytes(4, "big")).result(10).offset)
            except DiskFullError as exc:
                error = exc
                break
    return acked, error


def read_offsets(endpoint, topic, expected):
    consumer = Consumer(endpoint)
    consumer.assign([(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    while len(got) < expected:
        records = consumer.poll(2)
        assert records, f"read stalled at {len(got)} of {expected}"
        got += [r.offset for r in records]
    consumer.close()
    return got


def test_full_disk_then_guard_frees_space(small_disk, tmp_path):
    data = small_disk / "data"
    value = os.urandom(256 * 1024)
    no_guard = write_config(tmp_path / "noguard.toml", data, "0", "0")
    broker = BrokerProcess(data, extra_args=["--config", str(no_guard)])
    broker.start()
    try:
        acked, error = fill(broker.endpoint, "camera.front", value)
        assert error is not None, "the disk never filled"
        assert "disk full" in str(error) and "nothing was written" in str(error)
        assert len(acked) > 20
        # reads keep working on a full disk
        assert read_offsets(broker.endpoint, "camera.front", len(acked)) == list(range(len(acked)))
        with Admin(broker.endpoint) as admin:
            admin.ping()
    finally:
        assert broker.stop() == 0
    # nothing corrupt: a reopen finds every acknowledged batch and cuts nothing
    storage = Storage(data)
    report = storage.recovery_reports[0]
    assert report.truncated_bytes == 0 and storage.log("camera.front", 0).next_offset == len(acked)
    storage.close()

    guarded = write_config(tmp_path / "guard.toml", data, "6MiB", "2MiB")
    broker = BrokerProcess(data, extra_args=["--config", str(guarded)])
    broker.start()
    try:
        more, error = fill(broker.endpoint, "camera.front", value, limit=30)
        assert error is None, f"writes did not resume: {error}"
        assert more[0] == len(acked), "offsets continue after the full disk"
        with Admin(broker.endpoint) as admin:
            meta = admin.metadata()
        part = meta["topics"]["camera.front"]["partitions"][0]
        assert part["log_start"] > 0, "the disk guard deleted the oldest segments"
        assert sum(meta["broker"]["deletions"].values()) > 0
        assert shutil.disk_usage(small_disk).free > 2 * 1024 * 1024
    finally:
        assert broker.stop() == 0
