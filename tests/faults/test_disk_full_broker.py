"""A disk with no byte left (issue 21, item 2): the broker stays up through its timers' failed
writes (recovery checkpoint, group offsets), answers metadata and reads, refuses writes with
DiskFullError, shows ``disk_full`` in status and /metrics, drivers count the drops as
``disk_full``, and writes resume by themselves once space is back, without a restart."""

from __future__ import annotations

import errno
import os
import time

import pytest

from broker.client import Admin, Producer
from broker.errors import DiskFullError
from drivers.runtime import DriverRuntime, Sample
from edge.api.metrics import build_registry, render
from edge.status import StatusTracker, format_status
from tests.faults.test_full_disk import fill, read_offsets, write_config
from tests.support.broker_process import BrokerProcess

CHECKPOINT_WAIT_S = 6.5  # past the engine's recovery checkpoint interval (5 s); waited twice at most


def use_every_byte(directory):
    """Fill what is left of the filesystem with one file; returns its path."""
    path = directory / "filler"
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    f.write(chunk[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return path


def test_broker_stays_up_on_a_full_disk_and_writes_resume(small_disk, tmp_path):
    data = small_disk / "data"
    config = write_config(tmp_path / "noguard.toml", data, "0", "0")
    broker = BrokerProcess(data, extra_args=["--config", str(config)])
    broker.start()
    try:
        with Admin(broker.endpoint) as admin:
            admin.commit_offsets("readers", {("camera.front", 0): 0})
        acked, error = fill(broker.endpoint, "camera.front", os.urandom(256 * 1024))
        assert error is not None and len(acked) > 20
        filler = use_every_byte(small_disk)
        # the timers now fail to write (recovery checkpoint): on the old code the broker died here;
        # polled until a failed timer write is counted rather than slept for CHECKPOINT_WAIT_S
        deadline = time.monotonic() + 2 * CHECKPOINT_WAIT_S
        while broker.proc.poll() is None and time.monotonic() < deadline:
            with Admin(broker.endpoint, timeout_s=5) as admin:
                if admin.metadata()["broker"]["stats"]["background_errors"]:
                    break
            time.sleep(0.1)
        assert broker.proc.poll() is None, f"broker died on the full disk:\n{broker.log()}"
        assert read_offsets(broker.endpoint, "camera.front", len(acked)) == list(range(len(acked)))
        with Admin(broker.endpoint) as admin:
            with pytest.raises(DiskFullError):  # an offset commit is a write too: refused, typed
                admin.commit_offsets("readers", {("camera.front", 0): 5})
            assert admin.group_offsets("readers") == {("camera.front", 0): 0}  # unchanged
        with Producer(broker.endpoint, linger_ms=0, request_timeout_s=5) as producer, \
                pytest.raises(DiskFullError) as refused:
            producer.send("camera.front", b"x" * 100_000).result(10)
        assert refused.value.kafka_error == "KAFKA_STORAGE_ERROR" and refused.value.retriable

        # drivers count what the broker refused as disk_full
        with Producer(broker.endpoint, linger_ms=0, request_timeout_s=5, acks="written") as producer:
            runtime = DriverRuntime(name="cam", kind="camera", topic="camera.front", producer=producer,
                                    encode=lambda payload: (payload, {"encoding": "raw"}), health_interval_s=60)
            samples = [Sample(time.time_ns(), b"y" * 100_000) for _ in range(5)]
            assert runtime.run(lambda: iter(samples), finite=True) == 0
        assert runtime.counters.dropped["disk_full"] == 5 and runtime.counters.acknowledged == 0

        status = StatusTracker(broker.endpoint, include_drives=False).sample()
        # per request: commit, produce, driver batches
        assert status["disk"]["full"] and status["broker"]["stats"]["disk_full_refusals"] >= 3
        assert status["broker"]["stats"]["background_errors"], "the failed timer writes are counted"
        assert "DISK FULL" in format_status(status)
        metrics = render(build_registry(lambda: {**status, "ok": True})).decode()
        assert "edge_broker_disk_full 1.0" in metrics

        filler.unlink()  # space comes back: writes resume without a restart
        with Producer(broker.endpoint, linger_ms=0, request_timeout_s=5) as producer:
            offset = producer.send("camera.front", b"z" * 1000).result(10).offset
        assert offset == len(acked)
        with Admin(broker.endpoint) as admin:
            admin.commit_offsets("readers", {("camera.front", 0): 5})
            meta = admin.metadata()
        assert meta["broker"]["disk_full"] is False
        assert broker.proc.poll() is None
        print(f"\nfull disk: {len(acked)} acked before full, "
              f"refusals {status['broker']['stats']['disk_full_refusals']}, "
              f"background errors {status['broker']['stats']['background_errors']}, driver drops "
              f"{runtime.counters.dropped}, next offset after space came back {offset}")
        use_every_byte(small_disk)  # and full again when it is stopped: a clean exit all the same
    finally:
        code = broker.stop()
    assert code == 0, broker.log()
    assert "background_task_failed" in broker.log() and "Traceback" not in broker.log()
