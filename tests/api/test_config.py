"""The [api] config section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.api.config import ApiConfig


def test_defaults_are_loopback_without_token():
    api = ApiConfig()
    assert (api.host, api.port, api.token, api.enabled) == ("127.0.0.1", 8080, None, True)
    assert api.resolved_export_dir(Path("/var/lib/edge/data")) == Path("/var/lib/edge/data/exports")


def test_durations_and_validation():
    api = ApiConfig.model_validate({"status_interval": "500ms", "frame_fps": 5, "port": 9000})
    assert api.status_interval == 0.5 and api.port == 9000
    for bad in ({"bogus": 1}, {"port": 70000}, {"status_interval": "forever"}, {"frame_fps": 0},
                {"log_level": "LOUD"}):
        with pytest.raises(ValidationError):
            ApiConfig.model_validate(bad)
