"""``[events]`` config: defaults, durations, triggers; bad values named by key."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, parse_config


def test_defaults_and_durations(tmp_path):
    events = parse_config({}, tmp_path / "e.toml").events
    assert (events.before_ns, events.after_ns, events.topics, events.on_gap) == (30 * 10**9, 10 * 10**9, None, False)
    events = parse_config({"events": {"before": "1m", "after": "500ms", "triggers": [
        {"topic": "vehicle.can", "header": "event=hard_brake"}]}}, tmp_path / "e.toml").events
    assert (events.before_ns, events.after_ns) == (60 * 10**9, 500 * 10**6)
    assert events.triggers[0].event_label() == "hard_brake"


@pytest.mark.parametrize("events,key", [
    ({"before": "soon"}, "events.before"),
    ({"triggers": [{"topic": "vehicle.can", "header": "hard_brake"}]}, "events.triggers.0.header"),
    ({"triggers": [{"topic": "vehicle.can", "header": "a=b", "when": 1}]}, "events.triggers.0.when"),
    ({"after": "10s", "colour": "red"}, "events.colour"),
])
def test_bad_events_config_is_named(tmp_path, events, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"events": events}, tmp_path / "e.toml")
