"""``edge.export.run_export``: the contract the API's export jobs rely on
(edge.api.job_runners), run through the job runner itself."""

from __future__ import annotations

import json
import zipfile

import cv2
import pytest
from mcap.reader import make_reader

from edge.api import job_runners
from edge.api.jobs import JobCancelled
from edge.export import ExportError, run_export


class FakeReporter:
    def __init__(self, cancel_after: int | None = None):
        self.reports: list[tuple[float | None, str]] = []
        self.polls = 0
        self.cancel_after = cancel_after

    def progress(self, fraction=None, message=""):
        self.reports.append((fraction, message))

    def cancelled(self):
        self.polls += 1
        return self.cancel_after is not None and self.polls > self.cancel_after


def _params(recorded, fmt, topics=("camera.front", "lidar.top")):
    return {"endpoint": recorded.endpoint, "topics": list(topics), "start_ns": recorded.start_ns,
            "end_ns": recorded.end_ns, "format": fmt}


def test_the_api_sees_run_export():
    assert job_runners.available("export")


def test_mcap_job(recorded, tmp_path):
    report = FakeReporter()
    result = job_runners.run_export(_params(recorded, "mcap"), tmp_path, report)
    cam, lidar = recorded.topics["camera.front"], recorded.topics["lidar.top"]
    assert result["written"] == result["records"] == len(cam.timestamps) + len(lidar.timestamps)
    assert result["format"] == "mcap" and result["topics"]["lidar.top"]["schema"] == "foxglove.PointCloud"
    assert [p.name for p in tmp_path.iterdir()] == ["export.mcap"]
    assert report.reports[-1][0] == 1.0
    json.dumps(result)  # a job's result must be JSON
    with open(tmp_path / "export.mcap", "rb") as fh:
        assert make_reader(fh).get_summary().statistics.message_count == result["written"]


def test_mp4_job_keeps_cameras_only(recorded, tmp_path):
    result = job_runners.run_export(_params(recorded, "mp4"), tmp_path, FakeReporter())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["camera.front.frames.csv", "camera.front.mp4", "manifest.json"]
    assert result["skipped"] == {"lidar.top": len(recorded.topics["lidar.top"].timestamps)}
    video = cv2.VideoCapture(str(tmp_path / "camera.front.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(recorded.topics["camera.front"].timestamps)
    video.release()


@pytest.mark.parametrize("fmt", ["pcd", "ply"])
def test_cloud_jobs_zip_each_folder(recorded, tmp_path, fmt):
    result = job_runners.run_export(_params(recorded, fmt), tmp_path, FakeReporter())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["camera.front.frames.csv", "camera.front.mp4", "lidar.top.zip", "manifest.json"]
    assert all(p.is_file() for p in tmp_path.iterdir())  # the API offers top-level files only
    with zipfile.ZipFile(tmp_path / "lidar.top.zip") as archive:
        members = archive.namelist()
    lidar = recorded.topics["lidar.top"]
    assert sum(m.endswith(f".{fmt}") for m in members) == len(lidar.timestamps)
    assert "lidar.top/index.csv" in members
    assert result["topics"]["lidar.top"]["format"] == fmt


def test_cancel_returns_and_leaves_nothing(recorded, tmp_path):
    result = run_export(recorded.endpoint, ["camera.front", "lidar.top"], recorded.start_ns, recorded.end_ns,
                        "pcd", tmp_path, cancelled=FakeReporter(cancel_after=30).cancelled)
    assert result["cancelled"] is True
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_job_leaves_nothing(recorded, tmp_path):
    """Through the job runner: the cancel is seen (by ``cancelled()`` or by ``progress``
    raising JobCancelled), nothing is left in the job's directory."""
    for fmt in ("mcap", "ply"):
        report = FakeReporter(cancel_after=5)
        try:
            result = job_runners.run_export(_params(recorded, fmt), tmp_path, report)
        except JobCancelled:
            result = {"cancelled": True}
        assert result.get("cancelled") is True
        assert list(tmp_path.iterdir()) == []


def test_bad_requests(recorded, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        run_export(recorded.endpoint, ["camera.front"], recorded.start_ns, recorded.end_ns, "avi", tmp_path)
    from edge.replay.errors import SourceError

    with pytest.raises(SourceError, match="no topic 'nope'"):
        run_export(recorded.endpoint, ["nope"], recorded.start_ns, recorded.end_ns, "mcap", tmp_path)
    assert list(tmp_path.iterdir()) == []
