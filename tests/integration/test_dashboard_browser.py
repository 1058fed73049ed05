"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, via selenium).

A real broker process, a feed publishing 8 camera streams, a LiDAR and driver health
through the client library (until ``edge up`` drives this test), and the API under real
uvicorn. The page must render every camera tile from live frames, the LiDAR bird's-eye
view, the topics and drivers tables, stay responsive, and log no script error. A
screenshot is saved to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from edge.api.app import create_app
from edge.api.config import ApiConfig
from tests.api.support import ApiServer, SensorFeed, app_config

FAKE_EXPORT = {"export": "tests.api.fake_jobs:instant", "replay": "tests.api.fake_jobs:instant"}

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CAMERAS = ["front", "rear", "left", "right", "front_wide", "rear_wide", "cabin", "roof"]


def _driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1600,1300",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def _wait(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"dashboard: {what} within {timeout}s")
        time.sleep(0.2)


@pytest.mark.slow
def test_dashboard_renders_live_camera_tiles(broker, data_dir):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    from edge.drives import record_event

    feed = SensorFeed(broker.endpoint, CAMERAS, lidar="top", fps=10, size=(640, 360), mirror=True).start()
    record_event(broker.endpoint, "start", "drive-test-1", reason="test")
    from broker.client import Admin

    with Admin(broker.endpoint) as admin:
        admin.commit_offsets("perception", {("camera.front", 0): 0})
    config = app_config(data_dir, broker.endpoint, CAMERAS)
    # the export job runs a stand-in runner (the export library is exercised by its own tests)
    token = "browser-test-token-0123456789"  # the Export button writes: it needs the token
    app = create_app(config, api=ApiConfig(status_interval=0.5, frame_fps=10), job_runners=FAKE_EXPORT,
                     job_availability=lambda kind: True, token=token)
    server = ApiServer(app).start()
    profile = tempfile.mkdtemp(prefix="edge-chromium-")
    driver = _driver(profile)
    try:
        driver.get(server.url + f"/#token={token}")  # the link `edge up` prints
        assert driver.execute_script("return location.hash") == "", "the token stays in the address bar"
        # every camera tile gets live frames, and keeps getting them
        _wait(driver, f"return document.querySelectorAll('.cam-tile').length === {len(CAMERAS)}", 20,
              f"{len(CAMERAS)} camera tiles did not appear")
        _wait(driver, "return [...document.querySelectorAll('.cam-tile')].every(t => Number(t.dataset.frames) >= 3)",
              20, "not every camera tile drew live frames")
        offsets_script = ("return Object.fromEntries([...document.querySelectorAll('.cam-tile')]"
                          ".map(t => [t.dataset.topic, Number(t.dataset.offset)]))")
        first = driver.execute_script(offsets_script)
        time.sleep(1.5)
        later = driver.execute_script(offsets_script)
        assert all(later[t] > first[t] for t in first), (first, later)
        # the tiles show pictures, not blank canvases
        lit = driver.execute_script("""
            return [...document.querySelectorAll('.cam-tile canvas')].map(c => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let bright = 0; for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i+1] + d[i+2] > 120) bright++;
              return bright; });""")
        assert all(n > 10 for n in lit), lit
        # LiDAR bird's-eye, topics with rates, driver health, the drive
        _wait(driver, "return document.getElementById('lidar-canvas').dataset.offset !== undefined", 15,
              "the LiDAR bird's-eye view did not render")
        _wait(driver, "return document.querySelectorAll('#topics tr[data-topic]').length >= 10", 10,
              "the topics table did not fill")
        _wait(driver, f"return document.querySelectorAll('#drivers tbody tr').length === {len(CAMERAS) + 1}", 10,
              "the drivers table did not show every sensor")
        _wait(driver, "return !!document.querySelector('#drives tr[data-drive=\"drive-test-1\"]')", 15,
              "the drives list did not show the drive")
        _wait(driver, "return document.getElementById('mirror-pill').textContent === 'mirror up'", 10,
              "the mirror link did not show")
        _wait(driver, "return document.querySelectorAll('#mirror-lag tr').length === 3", 10, "no mirror lag rows")
        # the drive's Export button starts a job whose progress and file show up live
        driver.execute_script("document.querySelector('#drives tr[data-drive=\"drive-test-1\"] button').click()")
        _wait(driver, "return [...document.querySelectorAll('#jobs a')].some(a => a.textContent === 'result.txt')", 20,
              "the export job did not finish with its file listed")
        # Mark event pins the live topics; the event is listed with its pinned size, then deleted
        driver.execute_script("document.getElementById('event-label').value = 'browser'; "
                              "document.getElementById('event-create').click()")
        _wait(driver, "return [...document.querySelectorAll('#events tr[data-event]')]"
                      ".some(r => r.textContent.includes('browser'))",
              20, "the marked event was not listed")
        assert "pinned" in driver.execute_script("return document.getElementById('events-summary').textContent")
        driver.execute_script("document.querySelector('#events tr[data-event] button').click()")
        _wait(driver, "return document.querySelectorAll('#events tr[data-event]').length === 0", 20,
              "the deleted event stayed listed")
        # responsive: while 8 streams update, the page's main thread is mostly idle (long tasks,
        # i.e. > 50 ms of work without a break, take less than a third of a 3 s window)
        busy_ms = driver.execute_async_script("""
            const done = arguments[arguments.length - 1]; let busy = 0;
            const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) busy += e.duration; });
            obs.observe({ type: "longtask" });
            setTimeout(() => { obs.disconnect(); done(busy); }, 3000);""")
        assert busy_ms < 1000, f"main thread busy with long tasks for {busy_ms:.0f} ms of 3000"
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1600, min(int(height) + 140, 4000))  # the whole page in one picture
        time.sleep(0.5)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    finally:
        driver.quit()
        server.stop()
        feed.stop()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_dashboard_timeline_strip_marks_each_gap_and_a_stall(broker, data_dir):
    """The continuity strip per topic (last 10 min) marks every gap the driver's continuity
    health reports, where it happened, and a stall going on up to now; a topic no driver
    reports on has no marks."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    import json

    from broker.client import Admin, Producer
    from tests.api.support import publish_health

    now = time.time_ns()
    with Admin(broker.endpoint) as admin:
        admin.create_topic("_health", if_not_exists=True)
    producer = Producer(broker.endpoint, linger_ms=0)

    def health(last_gap, gaps, open_gap_ms=None):
        continuity = {"gaps": gaps, "last_gap": last_gap, "open_gap_ms": open_gap_ms, "usual_interval_ms": 10.0}
        body = {"sensor": "can", "kind": "other", "topic": "telemetry.can", "state": "running",
                "time_ns": time.time_ns(), "continuity": continuity}
        producer.send("_health", json.dumps(body).encode(), key=b"can", headers={"sensor": "can", "encoding": "json"})
        producer.flush(10)

    for i in range(5):  # the topics exist, recorded from 5 minutes ago
        producer.send("telemetry.can", b"x", timestamp_ns=now - 300 * 10**9 + i)
        producer.send("telemetry.gps", b"x", timestamp_ns=now - 300 * 10**9 + i)
    publish_health(producer, "gps", "other", "telemetry.gps", 0, 10.0)  # a driver, but no continuity report
    health({"start_ns": now - 240 * 10**9, "length_ms": 6000.0}, 1)  # a 6 s gap 4 minutes ago
    mirror = {"state": "running", "link": "up", "time_ns": time.time_ns(), "budget_exhausted": True,
              "budget_remaining_bytes": 0, "budget_warning": "uplink budget left this day (0 bytes) is smaller"}
    producer.send("_health", json.dumps(mirror).encode(), key=b"mirror", headers={"sensor": "mirror"})
    config = app_config(data_dir, broker.endpoint, [], lidar=None)
    server = ApiServer(create_app(config, api=ApiConfig(status_interval=0.3))).start()
    profile = tempfile.mkdtemp(prefix="edge-chromium-")
    driver = _driver(profile)
    strip = "document.querySelector('#topics tr[data-topic=\"telemetry.can\"] svg.timeline')"
    try:
        driver.get(server.url + "/")
        _wait(driver, f"return {strip} && {strip}.dataset.gaps === '1'", 20, "the first gap was not marked")
        health({"start_ns": now - 60 * 10**9, "length_ms": 3000.0}, 2, open_gap_ms=4500.0)  # another, and a stall
        _wait(driver, f"return {strip}.dataset.gaps === '3'", 20, "the second gap and the stall were not marked")
        marks = driver.execute_script(f"""return [...{strip}.querySelectorAll('rect.gap')].map(r =>
            [Number(r.getAttribute('x')), Number(r.getAttribute('width')), r.getAttribute('class'),
             Number(r.dataset.lengthMs)]);""")
        (x1, w1, c1, l1), (x2, w2, c2, l2), (x3, w3, c3, l3) = marks
        # 600 s wide: the 6 s gap 240 s ago sits at 360 less the seconds since (the strip moves with
        # the clock), the 3 s one 180 s later, the stall ends now
        assert c1 == c2 == "gap" and c3 == "gap open" and (l1, l2, l3) == (6000, 3000, 4500), marks
        assert 340 < x1 <= 360.5 and abs(x2 - x1 - 180) < 0.5 and abs(w1 - 6) < 0.5 and abs(w2 - 3) < 0.5, marks
        assert abs(x3 + w3 - 600) < 3, marks
        assert "gap of 6.0 s" in driver.execute_script(f"return {strip}.querySelector('rect.gap title').textContent")
        gps = "document.querySelector('#topics tr[data-topic=\"telemetry.gps\"] svg.timeline')"
        assert driver.execute_script(f"return {gps}.dataset.gaps") == "0"
        assert "unknown" in driver.execute_script(f"return {gps}.firstChild.getAttribute('class')")
        _wait(driver, "return document.getElementById('mirror-state').textContent.includes('budget exhausted')", 10,
              "the mirror panel did not say the uplink budget is exhausted")
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        server.stop()
        producer.close()
        shutil.rmtree(profile, ignore_errors=True)
