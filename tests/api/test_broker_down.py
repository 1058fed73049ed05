"""The API outlives its broker: while the broker is down, readiness fails, status says why
(keeping the last figures), broker-backed routes answer 503 JSON; when it is back, all recover."""

from __future__ import annotations

import time

from edge.api.app import create_app
from edge.api.config import ApiConfig
from tests.api.support import ApiServer, SensorFeed, app_config
from tests.support.broker_process import BrokerProcess


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_broker_restart(tmp_path):
    import requests

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    broker = BrokerProcess(data_dir).start()
    feed = SensorFeed(broker.endpoint, ["front"], lidar=None)
    feed.start()
    feed.stop()
    app = create_app(app_config(data_dir, broker.endpoint, ["front"]), api=ApiConfig(status_interval=0.2))
    server = ApiServer(app).start()
    get = lambda path: requests.get(server.url + path, timeout=15)  # noqa: E731
    try:
        _until(lambda: get("/readyz").status_code == 200, 10, "never ready")
        broker.kill()
        _until(lambda: get("/readyz").status_code == 503, 15, "readyz did not notice the broker is gone")
        status = get("/api/status").json()
        assert status["ok"] is False and status["error"]
        assert "camera.front" in status["topics"]  # the last good figures stay visible
        down = get("/api/topics/camera.front/latest.jpg")
        assert down.status_code == 503 and down.json()["error"] == "broker_unavailable"
        broker.start()
        _until(lambda: get("/readyz").status_code == 200, 15, "did not recover when the broker came back")
        assert get("/api/topics/camera.front/latest.jpg").status_code == 200
    finally:
        server.stop()
        if broker.proc is not None:
            broker.stop()
