"""The uplink's byte budget (never exceeded, survives a crash, renews each period, warns when
smaller than the event backlog), live-before-backlog order, decimation/transcoding on the
uplink, and the typed errors the ship loop acts on."""

from __future__ import annotations

import collections
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException

from drivers.camera.encoding import decode_frame, encode_frame
from drivers.pointcloud import POINT_DTYPE, decode_cloud, encode_cloud
from edge.config import ConfigError, parse_config
from edge.mirror import decimate
from edge.mirror.budget import BudgetFileError, UplinkBudget
from edge.mirror.config import MirrorConfig, TranscodeRule
from edge.mirror.decimate import HEADER_UPLINK, UplinkShaper, transcode, voxel_keep
from edge.mirror.reject import DestinationLimits
from edge.mirror.states import KafkaFatal, LinkDown, ProducerFenced, TransactionAbortRequired, classify
from edge.mirror.uplink import UplinkPlan

DAY = 86_400.0
T0 = 1_795_000_000.0  # 2026-11-18 11:06 UTC


def test_budget_is_never_exceeded_and_its_spent_counter_survives_a_crash(tmp_path):
    now = [T0]
    budget = UplinkBudget(10_000, "day", tmp_path, clock=lambda: now[0], grant_bytes=3_000)
    spent = sum(n for n in [1_500] * 10 if budget.try_spend(n))
    assert spent == 9_000 and budget.remaining == 1_000 and budget.blocked
    assert not budget.try_spend(1_001) and budget.try_spend(1_000) and not budget.try_spend(1)
    on_disk = json.loads((tmp_path / "budget.json").read_text())
    assert on_disk["granted_bytes"] >= budget.spent == 10_000  # written before the bytes went
    # a crash after 2,000 bytes of a fresh budget: the restart counts the whole grant as spent
    crash = tmp_path / "crash"
    first = UplinkBudget(10_000, "day", crash, clock=lambda: now[0], grant_bytes=3_000)
    assert first.try_spend(2_000)
    again = UplinkBudget(10_000, "day", crash, clock=lambda: now[0], grant_bytes=3_000)
    assert again.spent == 3_000 >= first.spent  # never less than what went on the link
    assert sum(500 for _ in range(40) if again.try_spend(500)) + first.spent <= 10_000
    # the next UTC day renews it
    now[0] = T0 + DAY
    assert again.try_spend(10_000) and again.status()["period_key"] != on_disk["period_key"]


def test_month_period_and_a_corrupt_budget_file_is_named_not_reset(tmp_path):
    now = [T0]
    budget = UplinkBudget(1_000, "month", tmp_path, clock=lambda: now[0])
    assert budget.try_spend(1_000)
    now[0] = T0 + 1 * DAY  # 2026-11-19: same month
    assert not budget.try_spend(1)
    now[0] = T0 + 15 * DAY  # December
    assert budget.try_spend(1)
    (tmp_path / "budget.json").write_text("{not json")
    with pytest.raises(BudgetFileError, match=r"budget\.json.*delete"):
        UplinkBudget(1_000, "month", tmp_path)


def test_a_budget_smaller_than_the_event_backlog_says_so(tmp_path):
    budget = UplinkBudget(1_000_000, "day", tmp_path)
    plan = UplinkPlan(MirrorConfig(bootstrap_servers="k:9092", topics=["*"]))
    pins = [{"closed": True, "ranges": [["camera.front", 0, 100, 200]]}]
    plan.note_events(pins, {("camera.front", 0): 150}, {("camera.front", 0): 50_000.0})
    assert plan.event_backlog_bytes == 2_500_000  # 50 unshipped records of about 50 kB
    message = budget.check_event_backlog(plan.event_backlog_bytes)
    assert message and "smaller than the complete events' backlog" in message and "1000000 bytes" in message
    assert budget.check_event_backlog(500_000) is None
    from edge.status import format_mirror

    line = format_mirror({"condition": "up", "lag_records": 50, "budget_warning": message,
                          "budget": {**budget.status(), "exhausted": True}})
    assert "uplink budget: 976.6KiB of 976.6KiB left this day (exhausted" in line and message in line


def test_budget_config_is_checked(tmp_path):
    cfg = MirrorConfig(bootstrap_servers="k:9092", topics=["*"], budget="2GB", budget_period="month")
    assert cfg.budget == 2_000_000_000
    with pytest.raises(ConfigError, match=r"mirror\.budget_period"):
        parse_config({"mirror": {"bootstrap_servers": "k:9092", "topics": ["*"], "budget_period": "week"}},
                     tmp_path / "edge.toml")


def test_live_partitions_ship_before_backlog_after_events():
    plan = UplinkPlan(MirrorConfig(bootstrap_servers="k:9092", topics=["*"], priorities={"telemetry.*": 9}))
    parts = [("camera.front", 0), ("telemetry.can", 0), ("lidar.top", 0)]
    plan.note_events([{"closed": True, "ranges": [["lidar.top", 0, 0, 10]]}], {})
    order = plan.order(parts, live={("camera.front", 0)})
    assert order == [("lidar.top", 0), ("camera.front", 0), ("telemetry.can", 0)]  # event, live, backlog


def _camera_record(offset=0, width=640, height=480):
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, (width // 2, height // 2), 100, (0, 200, 255), -1)
    value, headers = encode_frame(image, "jpeg", 95)
    return SimpleNamespace(topic="camera.front", partition=0, offset=offset, timestamp=1, key=None,
                           value=bytes(value), headers={k: v.encode() for k, v in headers.items()})


def test_camera_frames_go_up_smaller_and_marked_the_original_unchanged():
    record = _camera_record()
    original = bytes(record.value)
    cfg = MirrorConfig(bootstrap_servers="k:9092", topics=["*"], sampling={"camera.*": 3},
                       transcode={"camera.*": {"jpeg_quality": 30, "scale": 0.5}})
    shaper = UplinkShaper(cfg, "veh1")
    shaper.set_epoch("e" * 32)
    limit = DestinationLimits(1_000_000, False, None, None)
    assert shaper.outgoing(_camera_record(offset=1), limit) is None  # sampled out: 1 % 3
    out = shaper.outgoing(record, limit)
    headers = dict(out.headers)
    assert headers[HEADER_UPLINK] == b"every=3 scale=0.5 jpeg_quality=30 from=640x480:jpeg"
    assert (headers["width"], headers["height"]) == (b"320", b"240")
    assert decode_frame(out.value, headers).shape == (240, 320, 3)
    assert len(out.value) < len(original) / 2 and record.value == original and shaper.transcoded == 1
    assert shaper.outgoing(record, limit) is out  # waiting at its partition's head: transcoded once
    everything = UplinkShaper(MirrorConfig(bootstrap_servers="k:9092", topics=["*"], sampling={"*": 5},
                                           transcode={"*": {"jpeg_quality": 30}}), "veh1")
    catalog = SimpleNamespace(topic="_drives", partition=0, offset=3, timestamp=1, key=b"drive-1", value=b"{}",
                              headers={})
    shipped = everything.outgoing(catalog, limit)  # the drive catalog: never sampled nor transcoded
    assert shipped is not None and shipped.value == b"{}" and HEADER_UPLINK not in dict(shipped.headers)


def test_a_record_the_rule_cannot_read_ships_unchanged_and_says_why():
    headers = {"encoding": b"jpeg", "width": b"4", "height": b"4"}
    value, replaced, note = transcode(TranscodeRule(jpeg_quality=40), b"not an image", headers)
    assert value == b"not an image" and replaced == {} and note.startswith("unchanged:")
    assert transcode(TranscodeRule(voxel_m=0.5), b"x", {"encoding": b"json"})[2] == "unchanged:encoding=json"


def _cloud(n=20_000, seed=1):
    rng = np.random.default_rng(seed)
    points = np.zeros(n, POINT_DTYPE)
    for axis in "xyz":
        points[axis] = rng.uniform(-10, 10, n)
    points["intensity"] = np.arange(n) % 256
    return points


def test_lidar_voxel_downsample_keeps_real_points_with_all_fields():
    points = _cloud()
    value, headers = encode_cloud(points, model="VLP-16")
    new_value, replaced, note = transcode(TranscodeRule(voxel_m=2.0), bytes(value),
                                          {k: v.encode() for k, v in headers.items()})
    kept = decode_cloud(new_value, replaced)
    assert note == f"voxel_m=2 points=20000->{len(kept)}" and replaced["model"] == "VLP-16"
    assert 900 <= len(kept) <= 1000  # 10 x 10 x 10 voxels of 2 m over a 20 m cube
    assert np.isin(kept["intensity"], points["intensity"]).all()
    cells = {tuple(c) for c in np.floor((np.stack([kept["x"], kept["y"], kept["z"]], 1) + 10) / 2.0).astype(int)}
    assert len(cells) == len(kept)  # one point per voxel


def test_the_numpy_voxel_grid_is_only_the_fallback(monkeypatch):
    xyz = np.stack([_cloud(5_000)[a] for a in "xyz"], 1).astype(np.float64)
    assert decimate._open3d() is not None  # installed here: open3d finds the voxels
    with_open3d = voxel_keep(xyz, 4.0)
    monkeypatch.setattr(decimate, "_open3d", lambda: None)
    fallback = voxel_keep(xyz, 4.0)
    assert abs(len(with_open3d) - len(fallback)) <= len(fallback) * 0.05 and len(fallback) <= 125


def test_bad_transcode_rules_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"mirror\.transcode"):
        parse_config({"mirror": {"bootstrap_servers": "k:9092", "topics": ["*"],
                                 "transcode": {"camera.*": {"jpeg_quality": 0}}}}, tmp_path / "edge.toml")
    with pytest.raises(ConfigError, match="do not mix"):
        parse_config({"mirror": {"bootstrap_servers": "k:9092", "topics": ["*"],
                                 "transcode": {"x": {"voxel_m": 0.2, "scale": 0.5}}}}, tmp_path / "edge.toml")


def test_kafka_errors_become_typed_by_flags_never_by_text():
    def exc(code, **flags):
        return KafkaException(KafkaError(code, "any text at all", **flags))
    assert isinstance(classify(exc(KafkaError._TRANSPORT, retriable=True)), LinkDown)
    assert isinstance(classify(exc(KafkaError._FAIL, txn_requires_abort=True)), TransactionAbortRequired)
    assert isinstance(classify(exc(KafkaError.PRODUCER_FENCED, fatal=True)), ProducerFenced)
    assert isinstance(classify(exc(KafkaError._FAIL, fatal=True)), KafkaFatal)
    assert isinstance(classify(exc(KafkaError._TIMED_OUT, retriable=True)), LinkDown)


class _FakeProducer:
    """A transactional producer whose commit answers with the given errors, in turn."""

    def __init__(self, *commit_errors):
        self.commit_errors = list(commit_errors)
        self.commits = self.aborts = 0

    def commit_transaction(self, _timeout):
        self.commits += 1
        if self.commit_errors:
            raise self.commit_errors.pop(0)

    def abort_transaction(self, _timeout):
        self.aborts += 1

    def flush(self, _timeout):
        return 0


class _FakeConsumer:
    def __init__(self):
        self.seeks = []

    def seek(self, topic, partition, offset):
        self.seeks.append((topic, partition, offset))


def test_the_commit_steers_by_error_type(tmp_path, monkeypatch):
    from edge.mirror.service import MirrorService
    from edge.mirror.states import Link, Txn

    service = MirrorService(MirrorConfig(bootstrap_servers="k:9092", topics=["*"]), "veh1", "tcp://127.0.0.1:9",
                            tmp_path)
    monkeypatch.setattr(service, "_checkpoint", lambda: None)
    monkeypatch.setattr(service, "publish_health", lambda: None)
    tp = ("camera.front", 0)
    service.committed = {tp: 5}
    # retriable (link down): retried until Kafka commits, whatever the message says
    producer, consumer = _FakeProducer(KafkaException(KafkaError(KafkaError._TRANSPORT, "aborted?", retriable=True))), \
        _FakeConsumer()
    service.txn = Txn.OPEN
    service._commit(producer, consumer, {tp: 8}, {})
    assert (producer.commits, producer.aborts, service.txn, service.link) == (2, 0, Txn.NONE, Link.UP)
    assert service.committed[tp] == 8
    # abort required: aborted once, positions back at the last commit
    producer = _FakeProducer(KafkaException(KafkaError(KafkaError._FAIL, "retriable?", txn_requires_abort=True)))
    service.txn = Txn.OPEN
    service._commit(producer, consumer, {tp: 12}, {tp: collections.deque([1])})
    assert (producer.aborts, service.txn, service.committed[tp]) == (1, Txn.NONE, 8) and consumer.seeks == [(*tp, 8)]
    # fatal: a typed error ends the session (the next one makes a new producer)
    producer = _FakeProducer(KafkaException(KafkaError(KafkaError._FAIL, "retriable", fatal=True)))
    service.txn = Txn.OPEN
    with pytest.raises(KafkaFatal):
        service._commit(producer, consumer, {tp: 13}, {})
    # a produce that failed for the transaction: DOOMED commits nothing, it aborts
    producer = _FakeProducer()
    service.txn = Txn.DOOMED
    service._commit(producer, consumer, {tp: 14}, {})
    assert (producer.commits, producer.aborts, service.committed[tp]) == (0, 1, 8)
