"""Directory export of the real captures: an MP4 per camera, PCD/PLY files per LiDAR topic."""

from __future__ import annotations

import csv
import json

import cv2
import open3d as o3d

from edge.cli import main


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_directory_export_videos_and_clouds(recorded, tmp_path, capsys):
    out = tmp_path / "drive1"
    code = main(["export", "--topics", "camera.*,lidar.top", "--start", str(recorded.start_ns), "--end",
                 str(recorded.end_ns), "--out", str(out), "--endpoint", recorded.endpoint])
    assert code == 0, capsys.readouterr().err
    cam, lidar = recorded.topics["camera.front"], recorded.topics["lidar.top"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive1"]  # no temp left beside it

    video = cv2.VideoCapture(str(out / "camera.front.mp4"))
    try:
        assert video.isOpened()
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(cam.timestamps)
        assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == cam.size
        assert abs(video.get(cv2.CAP_PROP_FPS) - 12.5) < 0.01  # the recorded 80 ms interval
        ok, frame = video.read()
        assert ok and (frame.shape[1], frame.shape[0]) == cam.size
    finally:
        video.release()
    frames = _rows(out / "camera.front.frames.csv")
    assert [int(r["capture_ns"]) for r in frames] == cam.timestamps
    assert [int(r["offset"]) for r in frames] == cam.offsets
    assert [int(r["index"]) for r in frames] == list(range(len(cam.timestamps)))

    index = _rows(out / "lidar.top" / "index.csv")
    assert [int(r["capture_ns"]) for r in index] == lidar.timestamps
    assert [int(r["points"]) for r in index] == lidar.points
    files = sorted(p.name for p in (out / "lidar.top").glob("*.pcd"))
    assert files == sorted(r["file"] for r in index) and len(files) == len(lidar.timestamps)
    assert all(str(ts) in name for ts, name in zip(lidar.timestamps, (r["file"] for r in index), strict=True))
    cloud = o3d.io.read_point_cloud(str(out / "lidar.top" / index[2]["file"]))
    assert len(cloud.points) == lidar.points[2] == 13898
    attributes = o3d.t.io.read_point_cloud(str(out / "lidar.top" / index[2]["file"])).point
    assert {"positions", "intensity", "ring", "time"} <= set(attributes)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["window"]["start_ns"] == recorded.start_ns and manifest["window"]["end_ns"] == recorded.end_ns
    assert manifest["topics"]["camera.front"]["frames"] == len(cam.timestamps)
    assert manifest["topics"]["lidar.top"]["clouds"] == len(lidar.timestamps)
    assert manifest["topics"]["lidar.top"]["points"] == sum(lidar.points)
    assert manifest["corrupt"] == {"camera.bad": 2}  # camera.* matched it: bad frames skipped, good ones kept
    assert manifest["topics"]["camera.bad"]["frames"] == 4
    assert manifest["written"] == len(cam.timestamps) + len(lidar.timestamps) + 4


def test_ply_clouds(recorded, tmp_path):
    out = tmp_path / "clouds"
    assert main(["export", "--topics", "lidar.top", "--start", str(recorded.start_ns), "--end", str(recorded.end_ns),
                 "--out", str(out), "--cloud-format", "ply", "--endpoint", recorded.endpoint, "-q"]) == 0
    lidar = recorded.topics["lidar.top"]
    files = sorted((out / "lidar.top").glob("*.ply"))
    assert len(files) == len(lidar.timestamps)
    assert len(o3d.io.read_point_cloud(str(files[-1])).points) == lidar.points[-1]
    assert not (out / "camera.front.mp4").exists()


def test_existing_directory_is_refused_then_replaced_with_force(recorded, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["export", "--topics", "lidar.top", "--start", str(recorded.start_ns), "--end", str(recorded.end_ns),
            "--out", str(out), "--endpoint", recorded.endpoint, "-q"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main([*args, "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]
