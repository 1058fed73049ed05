"""``/api/events`` against a real broker: create needs the token, the event pins the live
topics, bad input is named (400/404), delete releases it."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families


def _auth(env) -> dict:
    return {"Authorization": f"Bearer {env.token}"}


def test_create_list_show_delete_event(api_env):
    refused = api_env.post("/api/events", json={"label": "x"}, with_token=False)
    assert refused.status_code == 401
    resp = api_env.post("/api/events", json={"label": "hard_brake", "before": "5s", "after": "1s",
                                             "topics": ["camera.front"]})
    assert resp.status_code == 201, resp.text
    event = resp.json()
    assert event["label"] == "hard_brake" and event["state"] == "recording" and event["topics"] == ["camera.front"]
    assert event["end_ns"] - event["start_ns"] == 6 * 10**9 and event["start"].endswith("Z")
    assert event["ranges"][0]["end_offset"] is None and event["pinned_bytes"] > 0  # fed at 10 Hz
    listed = api_env.get("/api/events").json()
    assert event["id"] in [e["id"] for e in listed["events"]] and listed["pinned_bytes"] >= event["pinned_bytes"]
    assert api_env.get(f"/api/events/{event['id']}").json()["id"] == event["id"]
    everything = api_env.post("/api/events", json={}).json()  # defaults: every recorded topic
    assert {"camera.front", "lidar.top"} <= set(everything["topics"]) and "_health" not in everything["topics"]

    deadline = time.monotonic() + 10
    while True:  # the monitor's next sample carries the pins into /metrics
        families = {f.name: f for f in text_string_to_metric_families(api_env.get("/metrics").text)}
        if families.get("edge_events") and families["edge_events"].samples[0].value >= 2:
            break
        assert time.monotonic() < deadline, "edge_events never reached 2"
        time.sleep(0.2)
    assert families["edge_events_pinned_bytes"].samples[0].value >= listed["pinned_bytes"]
    assert families["edge_broker_pinned_deleted_bytes"].samples[0].value == 0

    assert api_env.post("/api/events", json={"topics": ["no.such"]}).status_code == 404
    bad = api_env.post("/api/events", json={"before": "soon"})
    assert bad.status_code == 400 and "invalid before 'soon'" in bad.json()["message"]

    url = f"{api_env.url}/api/events/{event['id']}"
    assert requests.delete(url, timeout=10).status_code == 401
    assert requests.delete(url, headers=_auth(api_env), timeout=10).json()["id"] == event["id"]
    assert requests.delete(url, headers=_auth(api_env), timeout=10).status_code == 404
    assert requests.delete(f"{api_env.url}/api/events/{everything['id']}", headers=_auth(api_env),
                           timeout=10).status_code == 200
    assert api_env.get("/api/events").json()["events"] == []


def test_405_names_every_method_of_a_shared_path(api_env):
    """Starlette's 405 named only the first route's methods (``Allow: POST`` for /api/events,
    which GET serves too): the fuzz test's Allow check failed."""
    resp = requests.put(f"{api_env.url}/api/events", headers=_auth(api_env), timeout=10)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, POST"
    one = requests.post(f"{api_env.url}/api/events/ev-x", headers=_auth(api_env), timeout=10)
    assert one.status_code == 405 and one.headers["Allow"] == "DELETE, GET"
