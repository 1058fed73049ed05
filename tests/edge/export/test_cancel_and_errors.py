"""Cancelled and failed exports leave nothing under the final name; bad arguments fail
clearly (the CLI's exit code and one-line message)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import main
from edge.export import ExportCancelled, ExportError, export_window, plan_export
from edge.replay.sources import BrokerSource
from edge.replay.timespec import WindowSpec

EDGE = [sys.executable, "-m", "edge.cli"]


def _after(n):
    calls = {"records": 0}

    def cancelled():
        calls["records"] += 1
        return calls["records"] > n

    return cancelled


@pytest.mark.parametrize("name,fmt", [("half.mcap", "mcap"), ("half-dir", "dir")])
def test_cancel_midway_leaves_nothing(recorded, tmp_path, name, fmt):
    out = tmp_path / name
    reports = []
    with BrokerSource(recorded.endpoint) as source:
        plan = plan_export(source, ["camera.front", "lidar.top"], WindowSpec(recorded.start_ns, recorded.end_ns))
        with pytest.raises(ExportCancelled):
            export_window(source, plan.partitions, plan.window, out, fmt, expected=plan.expected,
                          progress=lambda f, m="": reports.append(f), cancelled=_after(40))
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temp
    assert reports and all(f is None or 0 <= f < 1 for f in reports)


def test_an_error_from_progress_aborts_and_cleans_up(recorded, tmp_path):
    """The API's progress raises JobCancelled on a cancel; any exception cleans up the same way."""

    class Stop(Exception):
        pass

    def progress(fraction, message=""):
        raise Stop()

    with BrokerSource(recorded.endpoint) as source:
        plan = plan_export(source, ["lidar.top"], WindowSpec(recorded.start_ns, recorded.end_ns))
        with pytest.raises(Stop):
            export_window(source, plan.partitions, plan.window, tmp_path / "x.mcap", "mcap", progress=progress)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_leaves_no_file(recorded, tmp_path):
    """A real ``edge export`` process interrupted with SIGINT exits 130 and leaves nothing.
    A directory export encodes an MP4 (seconds of work), so the signal lands mid-export."""
    import signal
    import time

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*EDGE, "export", "--topics", "camera.front,lidar.top", "--start", "earliest",
                             "--out", str(out), "--endpoint", recorded.endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".interrupted.partial-") and any(p.iterdir()) for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert list(tmp_path.iterdir()) == []


def _cli(*args):
    return subprocess.run([*EDGE, "export", *args], capture_output=True, text=True, timeout=60, check=False)


def test_bad_arguments_fail_clearly(recorded, tmp_path):
    window = ["--start", str(recorded.start_ns), "--end", str(recorded.end_ns), "--endpoint", recorded.endpoint]
    unknown = _cli("--topics", "camera.nope", "--out", str(tmp_path / "a.mcap"), *window)
    assert unknown.returncode == 2 and "no topic 'camera.nope'" in unknown.stderr
    assert "camera.front" in unknown.stderr  # the topics that exist are listed
    pattern = _cli("--topics", "radar.*", "--out", str(tmp_path / "a.mcap"), *window)
    assert pattern.returncode == 2 and "matches 'radar.*'" in pattern.stderr
    bad_time = _cli("--topics", "camera.front", "--start", "yesterday-ish!", "--out", str(tmp_path / "a.mcap"),
                    "--endpoint", recorded.endpoint)
    assert bad_time.returncode == 2 and "invalid time" in bad_time.stderr
    inverted = _cli("--topics", "camera.front", "--start", str(recorded.end_ns), "--end", str(recorded.start_ns),
                    "--out", str(tmp_path / "a.mcap"), "--endpoint", recorded.endpoint)
    assert inverted.returncode == 2 and "before it starts" in inverted.stderr
    no_drive = _cli("--topics", "camera.front", "--drive", "drive-19700101-000000", "--out",
                    str(tmp_path / "a.mcap"), "--endpoint", recorded.endpoint)
    assert no_drive.returncode == 2 and "no drive named" in no_drive.stderr
    missing = _cli("--out", str(tmp_path / "a.mcap"), *window)
    assert missing.returncode == 2 and "--topics" in missing.stderr  # argparse
    blocker = tmp_path / "file"
    blocker.write_text("x")
    unwritable = _cli("--topics", "lidar.top", "--out", str(blocker / "sub" / "a.mcap"), *window)
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_empty_window_publishes_nothing(recorded, tmp_path, capsys):
    early = recorded.start_ns - 10_000_000_000
    code = main(["export", "--topics", "camera.front,lidar.top", "--start", str(early), "--end",
                 str(early + 1_000_000_000), "--out", str(tmp_path / "empty.mcap"), "--endpoint", recorded.endpoint])
    assert code == 2
    assert "holds no records" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_only_unexportable_records_publish_nothing(recorded, tmp_path):
    with BrokerSource(recorded.endpoint) as source:
        plan = plan_export(source, ["gnss.fix"], WindowSpec(recorded.start_ns, recorded.end_ns))
        with pytest.raises(ExportError, match="none of the 6 records"):
            export_window(source, plan.partitions, plan.window, tmp_path / "g.mcap", "mcap")
    assert list(tmp_path.iterdir()) == []
