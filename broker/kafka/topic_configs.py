"""Kafka's topic config names mapped onto ``TopicConfig`` (broker/topic_config.py).

| Kafka name             | TopicConfig       | Kafka value <-> ours                               |
|------------------------|-------------------|----------------------------------------------------|
| retention.ms           | retention_age     | milliseconds, -1 = keep all (None)                 |
| retention.bytes        | retention_bytes   | bytes per partition, -1 = keep all (None)          |
| segment.bytes          | segment_bytes     | bytes                                              |
| segment.ms             | segment_age       | milliseconds                                       |
| max.message.bytes      | max_record_bytes  | bytes                                              |
| compression.type       | codec             | ``producer`` = none; other names passed through    |
| message.timestamp.type | timestamp_type    | CreateTime or LogAppendTime, the same names        |
| cleanup.policy         | (fixed)           | delete; compact is refused (not built yet)         |

Values are validated by TopicConfig (ranges included); a refusal is a ``ConfigValueError``
naming the key and the value, answered as Kafka's INVALID_CONFIG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..topic_config import TopicConfig

_MS_NS = 10**6


class ConfigValueError(ValueError):
    """A Kafka config name or value that cannot be applied."""


def _ms_or_none(ns: int | None) -> str:
    return "-1" if ns is None else str(ns // _MS_NS)


def _bytes_or_none(n: int | None) -> str:
    return "-1" if n is None else str(n)


def _parse_int(name: str, value: str | None) -> int:
    if value is None:
        raise ConfigValueError(f"{name} must be an integer, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigValueError(f"{name} must be an integer, not {value!r}") from None


def _to_size(name: str, value: str | None, allow_unlimited: bool) -> int | None:
    """A non-negative integer, or None for -1 where the key allows "unlimited"."""
    number = _parse_int(name, value)
    if number == -1 and allow_unlimited:
        return None
    if number < 0:
        raise ConfigValueError(f"{name} must be >= 0{' or -1' if allow_unlimited else ''}, not {number}")
    return number


def _to_duration(name: str, value: str | None, allow_unlimited: bool) -> str | None:
    ms = _to_size(name, value, allow_unlimited)
    return None if ms is None else f"{ms}ms"


def _to_codec(name: str, value: str | None) -> str | None:
    return "none" if value == "producer" else value


def _to_timestamp_type(name: str, value: str | None) -> str:
    if value not in ("CreateTime", "LogAppendTime"):
        raise ConfigValueError(f"{name} must be CreateTime or LogAppendTime, not {value!r}")
    return value


def _fixed(expected: str) -> Callable[[str, str | None], None]:
    def check(name: str, value: str | None) -> None:
        if value != expected:
            raise ConfigValueError(f"{name}={value!r} is not supported by this broker (only {expected!r})")

    return check


# kafka name: (TopicConfig key or None when fixed, show(config) -> str, parse(name, value) -> ours)
KAFKA_TOPIC_CONFIGS: dict[str, tuple[str | None, Callable[[TopicConfig], str], Callable[[str, str | None], object]]] = {
    "retention.ms": ("retention_age", lambda c: _ms_or_none(c.retention_ns),
                     lambda n, v: _to_duration(n, v, True)),
    "retention.bytes": ("retention_bytes", lambda c: _bytes_or_none(c.retention_bytes),
                        lambda n, v: _to_size(n, v, True)),
    "segment.bytes": ("segment_bytes", lambda c: str(c.segment_bytes), lambda n, v: _to_size(n, v, False)),
    "segment.ms": ("segment_age", lambda c: _ms_or_none(c.segment_ns), lambda n, v: _to_duration(n, v, False)),
    "max.message.bytes": ("max_record_bytes", lambda c: str(c.max_record_bytes),
                          lambda n, v: _to_size(n, v, False)),
    "compression.type": ("codec", lambda c: "producer" if c.codec == "none" else c.codec, _to_codec),
    "message.timestamp.type": ("timestamp_type", lambda c: c.timestamp_type, _to_timestamp_type),
    "cleanup.policy": (None, lambda c: "delete", _fixed("delete")),
}


def kafka_view(config: TopicConfig) -> dict[str, str]:
    """Every Kafka-named config of a topic, as Kafka shows it."""
    return {name: show(config) for name, (_, show, _) in KAFKA_TOPIC_CONFIGS.items()}


def overrides_from_kafka(changes: dict[str, str | None], defaults: TopicConfig) -> dict[str, object]:
    """TopicConfig overrides for Kafka ``name: value`` pairs; a value of None resets the key
    to ``defaults`` (IncrementalAlterConfigs DELETE)."""
    overrides: dict[str, object] = {}
    for name, value in changes.items():
        entry = KAFKA_TOPIC_CONFIGS.get(name)
        if entry is None:
            raise ConfigValueError(f"unknown or unsupported topic config {name!r} "
                                   f"(supported: {', '.join(sorted(KAFKA_TOPIC_CONFIGS))})")
        key, show, parse = entry
        parsed = parse(name, show(defaults) if value is None else value)
        if key is not None:
            overrides[key] = parsed
    return overrides


def topic_config_with(base: TopicConfig, overrides: Mapping[str, object]) -> TopicConfig:
    try:
        return base.merged(overrides)
    except Exception as exc:  # pydantic ValidationError names the key and the range
        raise ConfigValueError(str(exc).replace("\n", " ")) from None
