"""Storage engine: topics, partitions, configs, flush scheduling, recovery points."""

from __future__ import annotations

import json
import os

import pytest

from broker.errors import (
    InvalidConfigError,
    InvalidTopicError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from broker.storage import Storage
from broker.storage.layout import RECOVERY_POINTS_FILE
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of


@pytest.mark.parametrize("name", ["", "..", ".", "../etc", "a/b", "a\\b", "-x", ".hidden", "x" * 201, "a b", "_groups",
                                  "t.deleted-1", 5])
def test_unsafe_topic_names_are_refused(data_dir, name):
    storage = Storage(data_dir)
    with pytest.raises(InvalidTopicError):
        storage.create_topic(name)
    assert sorted(os.listdir(data_dir)) == []


def test_create_persist_configure_delete(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("camera.front", TopicConfig(partitions=2, codec="zstd", retention_age="72h"))
    with pytest.raises(TopicExistsError):
        storage.create_topic("camera.front")
    storage.log("camera.front", 1).append(make_batch(0, 3))
    with pytest.raises(UnknownPartitionError, match=r"0..1"):
        storage.log("camera.front", 2)
    with pytest.raises(UnknownTopicError):
        storage.log("nope", 0)
    storage.configure_topic("camera.front", {"partitions": 3, "retention_age": "1h"})
    with pytest.raises(InvalidConfigError, match="only grow"):
        storage.configure_topic("camera.front", {"partitions": 1})
    with pytest.raises(InvalidConfigError, match="retention_age"):
        storage.configure_topic("camera.front", {"retention_age": "soon"})
    storage.close()

    again = Storage(data_dir)
    config = again.topic_config("camera.front")
    assert (config.partitions, config.codec, config.retention_ns) == (3, "zstd", 3600 * 10**9)
    assert values_of(read_all(again.log("camera.front", 1))) == [0, 1, 2]
    again.delete_topic("camera.front")
    assert not again.has_topic("camera.front")
    assert [e for e in os.listdir(data_dir) if "camera" in e] == []
    again.create_topic("camera.front")
    assert again.log("camera.front", 0).next_offset == 0


def test_interval_flush_is_scheduled(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t", TopicConfig(flush="interval", flush_interval="50ms"))
    log = storage.log("t", 0)
    log.append(make_batch(0, 2))
    assert storage.next_flush_delay_s() is not None
    assert storage.flush_due(now_ns=log.last_flush_ns + 10_000_000) == []
    assert storage.flush_due(now_ns=log.last_flush_ns + 60_000_000) == [("t", 0, 2)]
    assert log.durable_offset == 2 and storage.next_flush_delay_s() is None


def test_recovery_points_checkpointed_at_close(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t", TopicConfig(partitions=2))
    storage.log("t", 1).append(make_batch(0, 4))
    storage.close()
    points = json.loads((data_dir / RECOVERY_POINTS_FILE).read_text())
    assert points == {"t/0": 0, "t/1": 4}


def test_unreadable_topic_config_skips_only_that_topic(data_dir, caplog):
    storage = Storage(data_dir)
    storage.create_topic("good")
    storage.create_topic("bad")
    storage.close()
    (data_dir / "bad" / "topic.json").write_text("{not json")
    again = Storage(data_dir)
    assert again.has_topic("good") and not again.has_topic("bad")
    assert "topic_skipped" in caplog.text and "bad" in caplog.text
