"""The HTTP API against a real broker process fed with record-contract camera, LiDAR and
health records (tests/api/support.py), served by real uvicorn."""

from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.client import Admin, Consumer, Producer
from broker.errors import OffsetOutOfRangeError


def _json_error(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) >= {"error", "message"} and body["message"]
    assert "Traceback" not in resp.text
    return body


def test_health_and_ready(api_env):
    assert api_env.get("/healthz").json() == {"status": "ok"}
    ready = api_env.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_status_has_topics_disk_drivers_and_rates(api_env):
    status = api_env.get("/api/status").json()
    assert status["ok"] is True
    topics = status["topics"]
    assert topics["camera.front"]["kind"] == "camera"
    assert topics["lidar.top"]["kind"] == "lidar"
    assert topics["_health"]["kind"] == "internal"
    assert topics["camera.front"]["records_per_s"] > 3  # fed at 10 Hz
    assert topics["camera.front"]["partitions"][0]["next_offset"] > 0
    assert topics["camera.front"]["oldest_ns"] is not None
    disk = status["disk"]
    assert disk["total_bytes"] > disk["free_bytes"] > 0 and disk["data_bytes"] > 0
    assert disk["min_free_bytes"] == 16 * 1024 * 1024
    assert set(status["drivers"]) == {"front", "rear", "top"}
    assert status["drivers"]["front"]["state"] == "running"
    # the parts, each on its own route, agree with the whole
    assert set(api_env.get("/api/topics").json()) == set(topics)
    assert api_env.get("/api/drivers").json().keys() == status["drivers"].keys()
    assert api_env.get("/api/disk").json()["total_bytes"] == disk["total_bytes"]
    assert api_env.get("/api/mirror").json() is None
    history = api_env.get("/api/status/history").json()
    assert len(history["camera.front"]["records_per_s"]) >= 2


def test_groups_show_lag(api_env):
    with Admin(api_env.endpoint) as admin:
        admin.commit_offsets("dashboard-test", {("camera.front", 0): 1})
    deadline = time.monotonic() + 5
    while "dashboard-test" not in api_env.get("/api/groups").json():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api_env.get("/api/groups").json()["dashboard-test"]["lag"] > 0


def test_drives_listed(api_env):
    from edge.drives import record_event

    record_event(api_env.endpoint, "start", "drive-api-test", reason="test")
    api_env.app.state.edge.monitor.refresh_soon()
    deadline = time.monotonic() + 10
    while not any(d["name"] == "drive-api-test" for d in api_env.get("/api/drives").json()):
        assert time.monotonic() < deadline, "drive not listed"
        time.sleep(0.2)
    drive = next(d for d in api_env.get("/api/drives").json() if d["name"] == "drive-api-test")
    assert drive["open"] is True


def test_describe_topic_and_unknown_topic(api_env):
    info = api_env.get("/api/topics/lidar.top").json()
    assert info["config"]["codec"] == "zstd" and info["kind"] == "lidar"
    _json_error(api_env.get("/api/topics/no.such.topic"), 404)
    _json_error(api_env.get("/api/topics/no.such.topic/records"), 404)
    _json_error(api_env.get("/api/topics/camera.front/records?partition=7"), 404)


def _produce_known(endpoint: str, topic: str, values: list[bytes], headers: dict[str, str]) -> list[tuple[int, int]]:
    """Produce with explicit capture times; returns (offset, timestamp) per record."""
    out = []
    base = time.time_ns()
    with Producer(endpoint, linger_ms=0) as producer:
        futures = [producer.send(topic, v, key=b"k%d" % i, headers=headers, timestamp_ns=base + i * 1_000_000)
                   for i, v in enumerate(values)]
        for i, f in enumerate(futures):
            out.append((f.result(10).offset, base + i * 1_000_000))
    return out


def test_browse_by_offset_time_and_newest(api_env):
    values = [json.dumps({"n": i}).encode() for i in range(20)]
    sent = _produce_known(api_env.endpoint, "browse.json", values, {"encoding": "json", "sensor": "probe"})
    page = api_env.get("/api/topics/browse.json/records", params={"offset": sent[5][0], "limit": 3}).json()
    assert [r["offset"] for r in page["records"]] == [sent[5][0], sent[6][0], sent[7][0]]
    assert page["next_offset"] == sent[8][0]
    record = page["records"][0]
    assert record["headers"] == {"encoding": "json", "sensor": "probe"}
    assert record["value"] == {"n": 5} and record["key"] == "k5"
    assert record["timestamp_ns"] == sent[5][1] and record["time"].endswith("Z")
    by_time = api_env.get("/api/topics/browse.json/records", params={"time": str(sent[12][1]), "limit": 2}).json()
    assert [r["value"]["n"] for r in by_time["records"]] == [12, 13]
    newest = api_env.get("/api/topics/browse.json/records", params={"limit": 4}).json()
    assert [r["value"]["n"] for r in newest["records"]] == [16, 17, 18, 19]
    past_end = api_env.get("/api/topics/browse.json/records", params={"offset": 10_000}).json()
    assert past_end["records"] == []
    _json_error(api_env.get("/api/topics/browse.json/records", params={"time": "yesterday-ish"}), 400)
    _json_error(api_env.get("/api/topics/browse.json/records", params={"time": "9" * 30}), 400)
    seconds = api_env.get("/api/topics/browse.json/records", params={"time": "1795341600"})  # epoch s, not ns
    assert seconds.status_code == 400 and "looks like epoch seconds" in seconds.json()["message"]
    assert api_env.get("/api/topics/browse.json/records", params={"time": "30s ago"}).status_code == 200
    _json_error(api_env.get("/api/topics/browse.json/records", params={"offset": 1, "time": "-1m"}), 400)


def test_browse_camera_headers_follow_the_contract(api_env):
    page = api_env.get("/api/topics/camera.front/records", params={"limit": 2}).json()
    headers = page["records"][-1]["headers"]
    assert headers["encoding"] == "jpeg" and headers["sensor"] == "front"
    assert {"seq", "capture_ns", "width", "height"} <= set(headers)
    assert page["records"][-1]["value"] is None  # images are not inlined


def test_record_and_value_download(api_env):
    payload = bytes(range(256)) * 10
    (offset, ts), = _produce_known(api_env.endpoint, "browse.bin", [payload], {"sensor": "probe"})
    meta = api_env.get(f"/api/topics/browse.bin/partitions/0/records/{offset}").json()
    assert meta["value_bytes"] == len(payload) and meta["timestamp_ns"] == ts
    value = api_env.get(f"/api/topics/browse.bin/partitions/0/records/{offset}/value")
    assert value.status_code == 200 and value.content == payload
    assert value.headers["content-type"] == "application/octet-stream"
    assert f'browse.bin-0-{offset}.bin' in value.headers["content-disposition"]
    _json_error(api_env.get(f"/api/topics/browse.bin/partitions/0/records/{offset + 99}"), 404)
    jpeg = api_env.get("/api/topics/camera.front/partitions/0/records/0/value")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"


def test_latest_camera_frame_is_jpeg(api_env):
    resp = api_env.get("/api/topics/camera.rear/latest.jpg")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 320, 3)
    end = api_env.get("/api/topics/camera.rear").json()["partitions"][0]["next_offset"]
    assert int(resp.headers["x-edge-offset"]) >= end - 3  # the newest, give or take the feed
    small = api_env.get("/api/topics/camera.rear/latest.jpg", params={"width": 160})
    assert cv2.imdecode(np.frombuffer(small.content, np.uint8), cv2.IMREAD_COLOR).shape == (90, 160, 3)
    _json_error(api_env.get("/api/topics/lidar.top/latest.jpg"), 422)
    with Admin(api_env.endpoint) as admin:
        admin.create_topic("camera.empty", if_not_exists=True)
    _json_error(api_env.get("/api/topics/camera.empty/latest.jpg"), 404)


def test_latest_png_and_raw_frames_are_converted(api_env):
    image = np.full((48, 64, 3), (10, 200, 30), np.uint8)
    _, png = cv2.imencode(".png", image)
    _produce_known(api_env.endpoint, "camera.png", [png.tobytes()],
                   {"encoding": "png", "width": "64", "height": "48", "sensor": "p"})
    _produce_known(api_env.endpoint, "camera.raw", [image.tobytes()],
                   {"encoding": "bgr8", "width": "64", "height": "48", "sensor": "r"})
    for topic in ("camera.png", "camera.raw"):
        resp = api_env.get(f"/api/topics/{topic}/latest.jpg")
        decoded = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (48, 64, 3)
        assert np.abs(decoded.astype(int) - image).mean() < 8
    _produce_known(api_env.endpoint, "camera.broken", [b"\x00" * 10],
                   {"encoding": "bgr8", "width": "64", "height": "48"})
    _json_error(api_env.get("/api/topics/camera.broken/latest.jpg"), 422)


def test_birdseye_png(api_env):
    resp = api_env.get("/api/topics/lidar.top/birdseye.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert resp.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (512, 512, 3)
    assert (image.max(axis=2) > 120).sum() > 100  # points drawn, not just the grid
    small = api_env.get("/api/topics/lidar.top/birdseye.png", params={"size": 128, "color": "intensity", "range_m": 20})
    assert cv2.imdecode(np.frombuffer(small.content, np.uint8), cv2.IMREAD_COLOR).shape == (128, 128, 3)
    _json_error(api_env.get("/api/topics/camera.front/birdseye.png"), 422)
    _json_error(api_env.get("/api/topics/lidar.top/birdseye.png", params={"color": "rainbow"}), 422)


def test_metrics_are_valid_prometheus_text(api_env):
    resp = api_env.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    names = {name for name, _ in samples}
    assert {"edge_topic_records_total", "edge_topic_bytes", "edge_topic_records_per_second",
            "edge_disk_free_bytes", "edge_disk_total_bytes", "edge_driver_captured_total",
            "edge_driver_dropped_total", "edge_api_status_ok", "process_cpu_seconds_total",
            "edge_broker_disk_full", "edge_broker_clients_refused_total", "edge_broker_connections",
            "edge_broker_parked_fetches", "edge_broker_unread_reply_bytes"} <= names
    assert samples[("edge_broker_disk_full", ())] == 0.0
    assert samples[("edge_broker_limit", (("name", "max_partitions_total"),))] > 0
    assert samples[("edge_broker_connections", ())] >= 1
    assert samples[("edge_topic_records_total", (("topic", "camera.front"),))] > 0
    assert samples[("edge_partition_future_records_total", (("partition", "0"), ("topic", "camera.front")))] == 0
    assert samples[("edge_api_status_ok", ())] == 1.0
    front = [v for (n, labels), v in samples.items() if n == "edge_driver_captured_total"
             and ("sensor", "front") in labels]
    assert front and front[0] > 0


def test_metrics_count_fetch_positions_no_longer_in_the_log(api_env):
    with Consumer(api_env.endpoint, auto_offset_reset="error", max_wait_ms=0) as consumer:
        consumer.assign([("camera.front", 0)])
        consumer.seek("camera.front", 0, 10**12)  # far past the end: the broker says so
        with pytest.raises(OffsetOutOfRangeError):
            consumer.poll(2)
    deadline = time.monotonic() + 10
    counted = 0.0
    while counted < 1 and time.monotonic() < deadline:  # the monitor samples the broker every second or so
        time.sleep(0.3)
        for family in text_string_to_metric_families(api_env.get("/metrics").text):
            for sample in family.samples:
                if (sample.name == "edge_broker_fetch_position_errors_total"
                        and sample.labels == {"error": "offset_out_of_range"}):
                    counted = sample.value
    assert counted >= 1


def _ws_url(env, query: str = "") -> str:
    return env.url.replace("http://", "ws://") + "/api/live" + query


def _split_frame(message: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<I", message)
    return json.loads(message[4:4 + n]), message[4 + n:]


def test_live_websocket_status_notices_and_frames(api_env):
    from websockets.sync.client import connect

    with connect(_ws_url(api_env), open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["vehicle"] == "sim-vehicle"
        assert "camera.front" in hello["status"]["topics"] and "camera.front" in hello["history"]
        ws.send(json.dumps({"watch": ["camera.front", "lidar.top", "_health", "nope"]}))
        seen_frames: dict[str, dict] = {}
        kinds: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ({"status", "records"} <= kinds and len(seen_frames) == 2):
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                header, body = _split_frame(message)
                seen_frames[header["topic"]] = header
                if header["mime"] == "image/jpeg":
                    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (180, 320, 3)
                else:
                    assert header["mime"] == "image/png" and body[:4] == b"\x89PNG"
            else:
                body = json.loads(message)
                kinds.add(body["type"])
                if body["type"] == "records":
                    assert all("next_offsets" in v for v in body["topics"].values())
        assert set(seen_frames) == {"camera.front", "lidar.top"}
        assert {"status", "records"} <= kinds
        ws.send("not json")
        deadline = time.monotonic() + 5
        while True:
            message = ws.recv(timeout=5)
            if isinstance(message, str) and json.loads(message)["type"] == "error":
                break
            assert time.monotonic() < deadline


def test_live_fps_cap_is_honoured(api_env):
    from websockets.sync.client import connect

    with connect(_ws_url(api_env), open_timeout=5) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"watch": ["camera.front"], "fps": 2}))
        frames = []
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            try:
                message = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                frames.append(time.monotonic())
        assert 2 <= len(frames) <= 8, len(frames)  # ~2 fps (plus the cached first frame), not 10


def test_jobs_progress_files_and_errors(api_env):
    resp = api_env.post("/api/jobs/export", json={"topics": ["camera.front"], "start": "-10s", "format": "mcap"})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["state"] in ("queued", "running") and job["params"]["topics"] == ["camera.front"]
    assert job["params"]["end_ns"] > job["params"]["start_ns"]
    relative = api_env.post("/api/jobs/export", json={"topics": ["camera.front"], "start": "2026-11-22T10:00:00Z",
                                                      "end": "+30s", "format": "mcap"})  # an end counts from the start
    assert relative.status_code == 202, relative.text
    assert relative.json()["params"]["end_ns"] - relative.json()["params"]["start_ns"] == 30 * 10**9
    deadline = time.monotonic() + 20
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = api_env.get(f"/api/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["result"]["records"] == 3
    assert job["result"]["files"] == [{"name": "result.txt", "bytes": len("topics=camera.front\n")}]
    file = api_env.get(f"/api/jobs/{job['id']}/files/result.txt")
    assert file.content == b"topics=camera.front\n"
    assert any(j["id"] == job["id"] for j in api_env.get("/api/jobs").json())
    _json_error(api_env.get(f"/api/jobs/{job['id']}/files/other.txt"), 404)
    _json_error(api_env.get("/api/jobs/nope-1"), 404)
    _json_error(api_env.post("/api/jobs/nope-1/cancel"), 404)
    # bad requests are refused before any job starts
    _json_error(api_env.post("/api/jobs/export", json={"topics": ["no.such"], "start": "-1m"}), 404)
    _json_error(api_env.post("/api/jobs/export", json={"topics": ["camera.front"]}), 400)
    _json_error(api_env.post("/api/jobs/export", json={"topics": ["camera.front"], "start": "-1m", "end": "-2m"}), 400)
    _json_error(api_env.post("/api/jobs/export", json={"topics": ["../etc"], "start": "-1m"}), 422)
    _json_error(api_env.post("/api/jobs/export", json={"topics": ["camera.front"], "drive": "no-such-drive"}), 404)
    _json_error(api_env.post("/api/jobs/replay", json={"topics": ["camera.front"], "start": "-1m", "speed": 50}), 422)


def test_unknown_route_is_json(api_env):
    _json_error(api_env.get("/api/nothing-here"), 404)
    _json_error(api_env.post("/api/status"), 405)


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/favicon.ico"])
def test_dashboard_files_are_served(api_env, path):
    resp = api_env.get(path)
    assert resp.status_code == 200 and len(resp.content) > 100
    assert "default-src 'self'" in resp.headers["content-security-policy"]


def test_live_survives_garbage_from_the_client(api_env):
    from websockets.sync.client import connect

    with connect(_ws_url(api_env), open_timeout=5, max_size=None) as ws:
        ws.recv(timeout=5)
        for junk in (b"\x00\xff binary", "[]", "{}", '{"watch": "camera.front"}', '{"watch": [1, null, {}]}',
                     '{"watch": [], "fps": "fast"}', "x" * 70_000, '{"watch": ["' + "a" * 500 + '"]}'):
            ws.send(junk)
        errors = 0
        deadline = time.monotonic() + 5
        while errors < 5 and time.monotonic() < deadline:
            message = ws.recv(timeout=5)
            if isinstance(message, str) and json.loads(message)["type"] == "error":
                errors += 1
        assert errors >= 5
        ws.send(json.dumps({"watch": ["camera.front"]}))  # still serving
        deadline = time.monotonic() + 5
        while not isinstance(message := ws.recv(timeout=5), bytes):
            assert time.monotonic() < deadline
        assert _split_frame(message)[0]["topic"] == "camera.front"
