"""Export and replay jobs through the HTTP API with the real runners (edge.export,
edge.replay), on a broker with live sensor feeds: the job runs in its own process, its
file downloads, and what it made is read back with the library that made it."""

from __future__ import annotations

import io
import time

import pytest
from mcap.reader import make_reader

from broker.client import Admin
from tests.api.conftest import start_env, stop_env


@pytest.fixture(scope="module")
def real_env(tmp_path_factory):
    env = start_env(tmp_path_factory.mktemp("api-real-jobs"), runners=None, cameras=("front",))
    time.sleep(2.0)  # two seconds of frames and clouds to export
    yield env
    stop_env(env)


def _wait(env, job_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = env.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s}s: {job}")
        time.sleep(0.2)


def _window(seconds: float) -> tuple[str, str]:
    end = time.time_ns() - 200_000_000
    return str(end - int(seconds * 1e9)), str(end)


def test_export_job_makes_an_mcap_foxglove_reads(real_env):
    start, end = _window(1.5)
    response = real_env.post("/api/jobs/export", json={"topics": ["camera.front", "lidar.top"], "start": start,
                                                       "end": end, "format": "mcap"})
    assert response.status_code == 202, response.text
    job = _wait(real_env, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0
    names = [f["name"] for f in job["result"]["files"]]
    assert names == ["export.mcap"]
    data = real_env.get(f"/api/jobs/{job['id']}/files/export.mcap").content
    assert len(data) == job["result"]["files"][0]["bytes"]
    reader = make_reader(io.BytesIO(data))
    summary = reader.get_summary()
    schemas = {summary.schemas[c.schema_id].name for c in summary.channels.values()}
    assert schemas == {"foxglove.CompressedImage", "foxglove.PointCloud"}
    per_topic: dict[str, int] = {}
    for _schema, channel, message in reader.iter_messages():
        assert int(start) <= message.log_time < int(end)
        per_topic[channel.topic] = per_topic.get(channel.topic, 0) + 1
    # 10 fps camera and 2 Hz LiDAR over 1.5 s
    assert 12 <= per_topic["camera.front"] <= 18, per_topic
    assert 2 <= per_topic["lidar.top"] <= 4, per_topic
    assert job["result"]["written"] == sum(per_topic.values())


def test_replay_job_republishes_under_its_prefix(real_env):
    start, end = _window(1.0)
    response = real_env.post("/api/jobs/replay", json={"topics": ["camera.front"], "start": start, "end": end,
                                                       "speed": None, "prefix": "api-replay."})
    assert response.status_code == 202, response.text
    job = _wait(real_env, response.json()["id"])
    assert job["state"] == "succeeded", job
    with Admin(real_env.endpoint) as admin:
        replayed = admin.list_offset("api-replay.camera.front", 0, "latest")
        first = admin.list_offset("camera.front", 0, "timestamp", int(start))
        last = admin.list_offset("camera.front", 0, "timestamp", int(end))
    assert replayed == last - first
    assert 8 <= replayed <= 12


def test_export_job_of_an_empty_window_fails_with_the_reason(real_env):
    response = real_env.post("/api/jobs/export", json={"topics": ["camera.front"], "start": "1000000000000000",
                                                       "end": "2000000000000000", "format": "mp4"})
    assert response.status_code == 202, response.text
    job = _wait(real_env, response.json()["id"])
    assert job["state"] == "failed"
    assert "no records" in job["error"] or "nothing exported" in job["error"], job["error"]
