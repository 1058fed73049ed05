"""Config files: validated on load; errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import DEFAULT_CONFIG, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert config.broker.data_dir.is_absolute()


def test_default_is_sim():
    assert load_config().source == DEFAULT_CONFIG


def test_sizes_and_durations_as_strings(tmp_path):
    config = load_config(write(tmp_path, """
[broker]
data_dir = "d"
[broker.defaults]
segment_bytes = "64MiB"
retention_age = "72h"
flush_interval = "50ms"
[topics."camera.front"]
codec = "zstd"
retention_bytes = "10GB"
"""))
    assert config.broker.defaults.segment_bytes == 64 * 1024**2
    assert config.broker.defaults.retention_ns == 72 * 3600 * 10**9
    assert config.broker.data_dir == (tmp_path / "d").resolve()
    topic = config.topic_config("camera.front")
    assert (topic.codec, topic.retention_bytes, topic.flush_interval_ns) == ("zstd", 10**10, 50_000_000)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[broker.defaults]\nretention_age = "soon"', ["broker.defaults.retention_age", "duration", "'soon'"]),
        ('[broker.defaults]\nsegment_bytes = "lots"', ["broker.defaults.segment_bytes", "size"]),
        ('[broker]\ncolour = "red"', ["broker.colour", "unknown key"]),
        ('[broker.defaults]\ncodec = "lz5"', ["broker.defaults.codec", "'none'", "'zstd'"]),
        ('[broker]\nendpoint = "http://x"', ["broker.endpoint", "ipc://"]),
        ('[topics."../etc"]\ncodec = "zstd"', ["invalid topic name"]),
        ('[topics.t]\nflush = "sometimes"', ["flush"]),
        ("[broker\n", ["not valid TOML"]),
    ],
)
def test_invalid_files_name_file_key_and_expectation(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_a_secret_with_a_bad_value_is_named_but_not_shown(tmp_path):
    path = write(tmp_path, '[api]\ntoken = 271828182845904523536\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "api.token" in str(err.value) and "not shown" in str(err.value)
    assert "271828182845904523536" not in str(err.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes(b'[vehicle]\nid = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"edge.toml: not UTF-8 text \(byte 19 is 0xe9\)"):
        load_config(path)


@pytest.mark.parametrize("key", ["segment_bytes", "retention_age"])
def test_infinite_sizes_and_durations_are_named(tmp_path, key):
    path = write(tmp_path, f"[broker.defaults]\n{key} = inf\n")
    with pytest.raises(ConfigError, match=rf"broker.defaults.{key}: .*finite"):
        load_config(path)


def test_sensor_mounting_becomes_its_record_headers():
    import json

    import pytest
    from pydantic import ValidationError

    from drivers.processes import _frame_headers
    from edge.config import CameraConfig, LidarConfig

    camera = CameraConfig(name="front", mounting={"xyz": [2.0, 0.1, 1.5], "rpy_deg": [0, 10, 0]})
    headers = _frame_headers(camera)
    assert headers["frame"] == "front"
    assert json.loads(headers["mounting"]) == {"parent": "base_link", "xyz": [2.0, 0.1, 1.5],
                                               "rpy_deg": [0.0, 10.0, 0.0]}
    assert _frame_headers(LidarConfig(name="roof")) == {"frame": "roof"}  # no mounting configured
    with pytest.raises(ValidationError, match="xyz"):
        LidarConfig(name="roof", mounting={"xyz": [1, 2]})
