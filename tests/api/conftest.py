"""Fixtures for the API tests: one real broker process with live sensor feeds and the API
under real uvicorn, shared by a test module (start-up costs a second, not per test)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from edge.api.app import create_app
from edge.api.config import ApiConfig
from tests.api.support import ApiServer, SensorFeed, app_config
from tests.support.broker_process import BrokerProcess

WRITE_TOKEN = "env-write-token-0123456789abcdef"  # reads stay open on loopback (the default)
FAKE_RUNNERS = {"export": "tests.api.fake_jobs:instant", "replay": "tests.api.fake_jobs:instant"}


@dataclass
class ApiEnv:
    url: str
    endpoint: str
    data_dir: Path
    broker: BrokerProcess
    feed: SensorFeed
    server: ApiServer
    app: Any
    token: str | None = None

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, *, with_token: bool = True, **kwargs) -> requests.Response:
        """POST, carrying the token (writes always need it) unless ``with_token`` is False."""
        if with_token and self.token:
            kwargs["headers"] = {"Authorization": f"Bearer {self.token}", **kwargs.get("headers", {})}
        return requests.post(self.url + path, timeout=10, **kwargs)


def start_env(tmp: Path, *, token: str | None = WRITE_TOKEN, runners: dict[str, str] | None = None,
              cameras: tuple[str, ...] = ("front", "rear"), open_reads: bool = True) -> ApiEnv:
    data_dir = tmp / "data"
    data_dir.mkdir()
    broker = BrokerProcess(data_dir).start()
    feed = SensorFeed(broker.endpoint, list(cameras), lidar="top", fps=10).start()
    config = app_config(data_dir, broker.endpoint, list(cameras))
    api = ApiConfig(status_interval=0.3, frame_fps=20, open_loopback_reads=open_reads)
    app = create_app(config, api=api, token=token, job_runners=runners,
                     job_availability=(lambda kind: True) if runners else None)
    server = ApiServer(app).start()
    env = ApiEnv(server.url, broker.endpoint, data_dir, broker, feed, server, app, token)
    # wait for the monitor to have seen the feed (kinds, rates)
    deadline = time.monotonic() + 15
    while True:
        snap = app.state.edge.monitor.snapshot()
        topics = snap.get("topics", {})
        if snap.get("ok") and topics.get("camera.front", {}).get("records_per_s") and snap.get("drivers"):
            return env
        if time.monotonic() > deadline:
            raise RuntimeError(f"monitor never saw the feed: {snap.get('error')}")
        time.sleep(0.1)


def stop_env(env: ApiEnv) -> None:
    env.server.stop()
    env.feed.stop()
    env.broker.stop()


@pytest.fixture(scope="module")
def api_env(tmp_path_factory):
    env = start_env(tmp_path_factory.mktemp("api"), runners=FAKE_RUNNERS)
    yield env
    stop_env(env)
