"""The dashboard of a live ``edge up`` on configs/sim.toml, in a real headless Chromium.

The appliance as a user starts it (simulated cameras and LiDAR, the API inside ``edge
up``), nothing stood in: the page must render both camera tiles from live frames and the
LiDAR view, list the drive ``edge up`` opened, and its Export button must run a real
export job whose MCAP file downloads and reads back with the ``mcap`` reader. A
screenshot is saved to ``test-artifacts/dashboard-edge-up.png``.
"""

from __future__ import annotations

import io
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from mcap.reader import make_reader

from tests.integration.test_dashboard_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM, _driver, _wait
from tests.integration.test_edge_up import sim_config

LISTEN = re.compile(r"api_ready\b.*?listen=\"?(127\.0\.0\.1:\d+)")


def _api_url(log: Path, proc, timeout: float = 40.0) -> str:
    """The API's address from its log (edge up keeps each child's log in <data>/logs/)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = LISTEN.search(log.read_text(errors="replace") if log.exists() else "")
        if match:
            return f"http://{match.group(1)}"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"the API never reported its address in {log}")


@pytest.mark.slow
def test_dashboard_of_a_live_edge_up_exports_its_drive(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    data_dir = tmp_path / "data"
    log = tmp_path / "edge-up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(sim_config(tmp_path)),
                                 "--data-dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    profile = tempfile.mkdtemp(prefix="edge-chromium-")
    driver = None
    try:
        url = _api_url(data_dir / "logs" / "api.log", proc)
        # edge up prints the dashboard link with the generated token once (writes need it)
        deadline = time.monotonic() + 30
        while not (printed := re.search(r"edge up: dashboard http://.*?/#token=(\S+)",
                                        log.read_text(errors="replace"))):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        assert printed.group(1) == (data_dir / ".api-token").read_text().strip()
        driver = _driver(profile)
        driver.get(url + f"/#token={printed.group(1)}")
        _wait(driver, "return document.querySelectorAll('.cam-tile').length === 2", 30,
              "the two simulated camera tiles did not appear")
        _wait(driver, "return [...document.querySelectorAll('.cam-tile')].every(t => Number(t.dataset.frames) >= 3)",
              30, "the camera tiles did not draw live frames")
        assert sorted(driver.execute_script(
            "return [...document.querySelectorAll('.cam-tile')].map(t => t.dataset.topic)")) == \
            ["camera.front", "camera.rear"]
        _wait(driver, "return document.getElementById('lidar-canvas').dataset.offset !== undefined", 20,
              "the LiDAR bird's-eye view did not render")
        drive = _wait(driver, "const r = document.querySelector('#drives tr[data-drive]'); return r && r.dataset.drive",
                      20, "the drive edge up opened is not listed")
        time.sleep(1.0)  # a little more of the drive to export
        driver.execute_script(f"document.querySelector('#drives tr[data-drive=\"{drive}\"] button').click()")
        href = _wait(driver, "const a = [...document.querySelectorAll('#jobs a')].find(a => a.textContent === "
                             "'export.mcap'); return a && a.href", 60, "the export job did not list export.mcap")
        data = requests.get(href, timeout=30).content
        topics: dict[str, int] = {}
        for schema, channel, _message in make_reader(io.BytesIO(data)).iter_messages():
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            assert schema.name in ("foxglove.CompressedImage", "foxglove.PointCloud")
        assert {"camera.front", "camera.rear", "lidar.top"} <= set(topics), topics
        assert topics["camera.front"] >= 10, topics
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-edge-up.png"))
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text(errors="replace")[-3000:]
