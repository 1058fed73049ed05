"""The mirror's config checks, epoch file, resume choice, refusal checks and the status
condition, without Kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from edge.config import ConfigError, parse_config
from edge.mirror.destination import Identity, MirrorError, ResumeProbe
from edge.mirror.reject import DestinationLimits, parse_policy
from edge.mirror.resume import choose_start, load_or_create_identity
from edge.status import format_mirror, mirror_condition


def mirror_config(**mirror):
    return parse_config({"mirror": {"bootstrap_servers": "k:9092", "topics": ["camera.*"], **mirror}},
                        Path("/x/e.toml"))


def test_destination_without_vehicle_is_refused_unless_declared_shared():
    with pytest.raises(ConfigError, match=r"mirror: destination 'fleet.\{topic\}' has no \{vehicle\}"):
        mirror_config(destination="fleet.{topic}")
    assert mirror_config(destination="fleet.{topic}", shared_destination=True).mirror.shared_destination


def test_on_reject_policies():
    assert parse_policy("dead-letter fleet.rejected") == ("dead-letter", "fleet.rejected")
    with pytest.raises(ConfigError, match="on_reject 'dead-letter': use skip, stop-partition"):
        mirror_config(on_reject="dead-letter")
    config = mirror_config(on_reject={"telemetry.*": "skip", "*": "dead-letter dlq"}).mirror
    assert config.reject_policy("telemetry.can") == ("skip", None)
    assert config.reject_policy("camera.front") == ("dead-letter", "dlq")
    assert config.dead_letter_topics() == {"dlq"}
    assert mirror_config().mirror.reject_policy("camera.front") == ("stop-partition", None)


def test_epoch_file_is_created_once_and_a_corrupt_one_is_an_error(tmp_path):
    first, created = load_or_create_identity(tmp_path / ".mirror", "v1", shipped_before=False)
    again, created_again = load_or_create_identity(tmp_path / ".mirror", "v1", shipped_before=True)
    assert created and not created_again and again == first and not first.adopts_unmarked
    other, _ = load_or_create_identity(tmp_path / "new-disk", "v1", shipped_before=True)
    assert other.epoch != first.epoch and other.adopts_unmarked  # an upgrade keeps pre-epoch records as its own
    (tmp_path / ".mirror" / "epoch.json").write_text("{not json")
    with pytest.raises(MirrorError, match="corrupt mirror epoch file"):
        load_or_create_identity(tmp_path / ".mirror", "v1", shipped_before=False)


def test_identity_owns_only_its_vehicle_and_epoch():
    mine = Identity("v1", "a" * 32)
    assert mine.owns({"edge.vehicle": b"v1", "edge.epoch": b"a" * 32})
    assert not mine.owns({"edge.vehicle": b"v2", "edge.epoch": b"a" * 32})
    assert not mine.owns({"edge.vehicle": b"v1", "edge.epoch": b"b" * 32})
    assert not mine.owns({"edge.vehicle": b"v1"})
    assert Identity("v1", "a" * 32, adopts_unmarked=True).owns({"edge.vehicle": b"v1"})


def test_resume_trusts_the_destination_only_while_it_holds_the_evidence():
    assert choose_start(ResumeProbe(300, True, 0, 400), 200, 10_000).source == "destination"
    assert choose_start(ResumeProbe(300, True, 0, 400), None, 10_000).offset == 300
    emptied = choose_start(ResumeProbe(None, True, 400, 400), 200, 10_000)
    assert (emptied.offset, emptied.source) == (200, "local") and "retention or DeleteRecords" in emptied.reason
    bound = choose_start(ResumeProbe(None, False, 0, 90_000), 200, 10_000)
    assert bound.offset == 200 and "scan bound" in bound.reason
    behind = choose_start(ResumeProbe(150, True, 0, 400), 200, 10_000)
    assert behind.offset == 200 and "behind the local commit" in behind.reason
    assert choose_start(ResumeProbe(None, True, 0, 400), None, 10_000) is None  # first shipment: log start


def test_refusals_known_before_sending():
    limits = DestinationLimits(10_000, compacted=True, timestamp_after_ms=3_600_000, timestamp_before_ms=None)
    now = int(time.time() * 1000)
    assert limits.refusal(None, now, now)[0] == KafkaError.INVALID_RECORD
    assert limits.refusal(b"k", now + 2 * 3_600_000, now)[0] == KafkaError.INVALID_TIMESTAMP
    assert limits.refusal(b"k", now - 30 * 86_400_000, now) is None
    # headers count: a 9,800-byte value fits alone, not with 300 bytes of headers
    assert limits.record_bytes(b"k", b"x" * 9_800, []) <= 10_000
    assert limits.record_bytes(b"k", b"x" * 9_800, [("h", b"y" * 300)]) > 10_000


def test_mirror_condition_is_never_a_stale_up():
    now = time.time_ns()
    report = {"link": "up", "time_ns": now - 10**9, "pid": os.getpid(), "host": socket.gethostname(),
              "last_progress_ns": now - 2 * 10**9, "stall_after_ns": 10 * 10**9, "lag_records": 3}
    assert mirror_condition(report, 3, now)["condition"] == "up"
    stalled = mirror_condition({**report, "last_progress_ns": now - 30 * 10**9}, 2054, now)
    assert stalled["condition"] == "stalled" and "2054 records waiting" in stalled["condition_reason"]
    assert mirror_condition({**report, "last_progress_ns": now - 30 * 10**9}, 0, now)["condition"] == "up"
    assert mirror_condition({**report, "time_ns": now - 20 * 10**9}, 0, now)["condition"] == "down"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert mirror_condition({**report, "pid": gone.pid}, 0, now)["condition_reason"] == "its process is gone"
    final = mirror_condition({**report, "state": "stopped", "stop_reason": "too_large = stop: ..."}, 0, now)
    assert final["condition"] == "stopped" and final["condition_reason"].startswith("too_large")
    assert format_mirror(mirror_condition(None, None, now)).startswith("mirror: no report")
    assert "stalled since" in format_mirror({**report, **stalled})


def test_metrics_show_the_condition_not_the_link():
    from prometheus_client import CollectorRegistry, generate_latest

    from edge.api.metrics import SnapshotCollector

    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: {"mirror": {"link": "up", "condition": "stalled", "lag_records": 9}}))
    text = generate_latest(registry).decode()
    assert 'edge_mirror_condition{condition="stalled"} 1.0' in text and "edge_mirror_up 0.0" in text
