"""Unshipped data is protected from the first record, and what the disk guard deletes
anyway is counted by the mirror as it happens (issue 28 cases 5 and 6)."""

from __future__ import annotations

import time

import pytest

from broker.client import Admin
from edge.status import latest_health
from tests.support.broker_process import BrokerProcess

from .conftest import mirror_factory
from .test_mirror import cloud_records, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def broker_config(path, bootstrap: str, extra: str = "") -> str:
    path.write_text(f'[vehicle]\nid = "v1"\n[mirror]\nbootstrap_servers = "{bootstrap}"\ntopics = ["camera.*"]\n'
                    '[topics."camera.front"]\nretention_bytes = "200KiB"\nsegment_bytes = "64KiB"\n'
                    '[topics."telemetry.x"]\nretention_bytes = "200KiB"\nsegment_bytes = "64KiB"\n' + extra)
    return str(path)


def log_start(admin: Admin, topic: str) -> int:
    return admin.describe_topic(topic)["partitions"][0]["log_start"]


def test_mirrored_topics_are_protected_before_the_mirror_ever_committed(tmp_path):
    """A vehicle offline since first boot: the mirror never reached Kafka, never committed."""
    config = broker_config(tmp_path / "edge.toml", "127.0.0.1:1")
    with BrokerProcess(tmp_path / "data", extra_args=["--config", config]) as broker:
        produce_local(broker.endpoint, "camera.front", 1000, max_batch_bytes=16 * 1024)
        produce_local(broker.endpoint, "telemetry.x", 1000, max_batch_bytes=16 * 1024)
        with Admin(broker.endpoint) as admin:
            deadline = time.monotonic() + 30
            while log_start(admin, "telemetry.x") == 0 and time.monotonic() < deadline:
                time.sleep(0.5)  # the broker enforces retention every 10 s
            assert log_start(admin, "telemetry.x") > 0, "retention never ran: the check below would prove nothing"
            # before: offsets 0..~800 deleted (logged unshipped=False), the mirror reported nothing
            assert log_start(admin, "camera.front") == 0
            assert admin.describe_topic("camera.front")["partitions"][0]["protected_offset"] == 0
        assert "unshipped=True" not in broker.log()


def test_disk_guard_deletions_are_counted_by_the_running_mirror(tmp_path, kafka_single):
    """Below critical_free the disk guard deletes unshipped segments while the mirror is
    behind (bandwidth cap): every source offset is then either in the cloud exactly once,
    in order, or in a lost range the mirror reported while running."""
    guard = '[broker.disk_guard]\nmin_free = "1000000TB"\ncritical_free = "1000000TB"\n'
    config = broker_config(tmp_path / "edge.toml", kafka_single.bootstrap_servers, guard)
    with BrokerProcess(tmp_path / "data", extra_args=["--config", config]) as broker:
        make, vehicle, started = mirror_factory(tmp_path, broker, kafka_single)
        produce_local(broker.endpoint, "camera.front", 2000, max_batch_bytes=16 * 1024)
        mirror = make(topics='["camera.*"]', transaction_interval='"200ms"', bandwidth='"40KB"',
                      max_buffer_bytes='"16KiB"').start()
        try:
            with Admin(broker.endpoint) as admin:
                deadline = time.monotonic() + 40
                while log_start(admin, "camera.front") == 0 and time.monotonic() < deadline:
                    time.sleep(0.5)
                start = log_start(admin, "camera.front")
                assert start > 0, "the disk guard never deleted: the check below would prove nothing"
                deadline = time.monotonic() + 60
                status = {}
                while time.monotonic() < deadline:
                    status = latest_health(broker.endpoint, admin).get("mirror") or {}
                    if status.get("lost_to_retention") and status["partitions"]["camera.front/0"]["lag_records"] == 0:
                        break
                    time.sleep(0.5)
            lost = status.get("lost_to_retention", 0)
            got = cloud_records(kafka_single, f"vehicles.{vehicle}.camera.front", 2000 - lost, timeout=60)
        finally:
            for proc in started:
                proc.kill()
    shipped = [int(dict(m.headers())["edge.source.offset"]) for m in got]
    reported = [o for _t, _p, first, last in status.get("lost_ranges", []) for o in range(first, last + 1)]
    # before: lost_to_retention 0 and the deleted offsets silently missing
    assert lost > 0 and len(reported) == lost, status
    assert sorted(shipped + reported) == list(range(2000)), (status, mirror.log())
    assert shipped == sorted(shipped), "reordered"
    print(f"disk guard: {len(shipped)} shipped once in order, {lost} lost and reported in "
          f"{len(status['lost_ranges'])} ranges, of 2000")
