"""Topic config ranges: every size and duration has one, and a value outside it is refused
with an error naming the key, the value and the range."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker.errors import InvalidConfigError
from broker.storage import Storage
from broker.topic_config import RANGES, TopicConfig

FIELDS = {"segment_age": "segment_ns", "retention_age": "retention_ns", "flush_interval": "flush_interval_ns",
          "max_future_skew": "max_future_skew_ns"}


def as_config_value(value: int, kind: str):
    return f"{value}ns" if kind == "duration" else value  # a bare number is seconds there


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_range_is_enforced_at_both_ends(key):
    low, high, kind = RANGES[key]
    for good in (low, high):
        config = TopicConfig(**{key: as_config_value(good, kind)})
        assert getattr(config, FIELDS.get(key, key)) == good
    step = 1 if kind == "size" else 10**6  # durations go through a float: step by 1 ms
    for bad in (low - step, high + step):
        if bad < 0:
            continue  # negative sizes and durations are refused by their parser already
        with pytest.raises(ValidationError, match=rf"{key} = .* is outside its range"):
            TopicConfig(**{key: as_config_value(bad, kind)})


def test_segment_bytes_zero_and_above_the_index_limit_are_refused_by_name():
    for value in (0, "4GiB"):
        with pytest.raises(ValidationError) as info:
            TopicConfig(segment_bytes=value)
        assert "segment_bytes" in str(info.value) and "2147483647" in str(info.value)


def test_configure_topic_names_the_bad_key_and_keeps_the_old_config(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t", TopicConfig())
    with pytest.raises(InvalidConfigError, match=r"flush_interval = 0ns is outside its range 1ms \.\. 1h"):
        storage.configure_topic("t", {"flush_interval": "0s"})
    assert storage.topic_config("t") == TopicConfig()
    storage.close()
