"""The job manager: child processes, progress, failures, cancels (polite and stubborn), limits."""

from __future__ import annotations

import time

import pytest

from edge.api.errors import NotFound, TooManyJobs
from edge.api.jobs import JobManager, pid_alive

RUNNERS = {"ok": "tests.api.fake_jobs:instant", "fail": "tests.api.fake_jobs:failing",
           "stubborn": "tests.api.fake_jobs:stubborn", "polite": "tests.api.fake_jobs:polite",
           "missing": "tests.api.fake_jobs:no_such_function"}


def _wait_state(manager: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while (job := manager.get(job_id)).state not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


@pytest.fixture
def manager(tmp_path):
    changes = []
    m = JobManager(tmp_path / "exports", RUNNERS, max_running=2, max_queued=2, grace_s=1.0,
                   on_change=changes.append)
    m.changes = changes
    yield m
    m.close()


def test_success_failure_and_missing_runner(manager):
    ok = manager.submit("ok", {"topics": ["a", "b"]})
    fail = manager.submit("fail", {})
    done = _wait_state(manager, ok.id, ("succeeded", "failed"))
    assert done.state == "succeeded" and done.progress == 1.0
    assert done.result == {"records": 3, "files": [{"name": "result.txt", "bytes": len("topics=a,b\n")}]}
    assert manager.file_path(ok.id, "result.txt").read_text() == "topics=a,b\n"
    failed = _wait_state(manager, fail.id, ("succeeded", "failed"))
    assert failed.state == "failed" and "no records" in failed.error
    missing = manager.submit("missing", {})
    assert "AttributeError" in _wait_state(manager, missing.id, ("failed",)).error
    assert manager.changes, "listeners were told about the changes"
    with pytest.raises(NotFound):
        manager.submit("nope", {})
    with pytest.raises(NotFound):
        manager.file_path(ok.id, "../../etc/passwd")


def test_cancel_polite_and_stubborn_jobs(manager):
    polite = manager.submit("polite", {})
    stubborn = manager.submit("stubborn", {})
    _wait_state(manager, polite.id, ("running",))
    _wait_state(manager, stubborn.id, ("running",))
    time.sleep(0.5)  # both children are up and reporting
    manager.cancel(polite.id)
    manager.cancel(stubborn.id)
    assert _wait_state(manager, polite.id, ("cancelled", "failed", "succeeded")).state == "cancelled"
    job = _wait_state(manager, stubborn.id, ("cancelled", "failed", "succeeded"), timeout=15)
    assert job.state == "cancelled"
    deadline = time.monotonic() + 5
    while pid_alive(job.pid):
        assert time.monotonic() < deadline, "the stubborn child was not terminated"
        time.sleep(0.05)


def test_queue_limit_and_cancel_before_start(manager):
    running = [manager.submit("polite", {}) for _ in range(2)]
    queued = [manager.submit("polite", {}) for _ in range(2)]
    assert [j.state for j in queued] == ["queued", "queued"]
    with pytest.raises(TooManyJobs):
        manager.submit("polite", {})
    assert manager.cancel(queued[0].id).state == "cancelled"
    for job in running:
        manager.cancel(job.id)
    assert _wait_state(manager, queued[1].id, ("running",)).state == "running"


def test_runner_adapter_passes_what_the_library_declares(monkeypatch, tmp_path):
    import multiprocessing as mp
    import sys
    import types

    from edge.api import job_runners
    from edge.api.jobs import JobCancelled, Reporter

    calls = {}

    def run_export(endpoint, topics, start_ns, end_ns, format, out_dir, progress):
        calls.update(endpoint=endpoint, topics=topics, window=(start_ns, end_ns), format=format)
        progress(1.0, "written")
        (out_dir / "drive.mcap").write_bytes(b"mcap")
        return {"records": 7}

    fake = types.ModuleType("edge.export")
    fake.run_export = run_export
    monkeypatch.setitem(sys.modules, "edge.export", fake)
    assert job_runners.available("export") and not job_runners.available("nope")
    receive, send = mp.Pipe(duplex=False)
    cancel = mp.Event()
    params = {"endpoint": "ipc:///x", "topics": ["camera.front"], "start_ns": 1, "end_ns": 2, "format": "mcap"}
    assert job_runners.run_export(params, tmp_path, Reporter(send, cancel)) == {"records": 7}
    assert calls == {"endpoint": "ipc:///x", "topics": ["camera.front"], "window": (1, 2), "format": "mcap"}
    assert receive.recv() == ("progress", 1.0, "written")
    cancel.set()
    with pytest.raises(JobCancelled):
        job_runners.run_export(params, tmp_path, Reporter(send, cancel))
    receive.close()
    send.close()


ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from edge.api.jobs import JobManager
manager = JobManager(Path(sys.argv[1]), {"stubborn": "tests.api.fake_jobs:stubborn"})
job = manager.submit("stubborn", {})
while manager.get(job.id).message != "sleeping":
    time.sleep(0.05)
print(manager.get(job.id).pid, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_job_dies_with_a_sigkilled_api_process(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    api = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "exports")],
                           stdout=subprocess.PIPE, text=True)
    job_pid = 0
    try:
        job_pid = int(api.stdout.readline())
        assert _running(job_pid)
        os.kill(api.pid, signal.SIGKILL)
        api.wait(10)
        deadline = time.monotonic() + 5
        while _running(job_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(job_pid), "the job outlived its API process"
    finally:
        api.kill()
        api.stdout.close()
        if job_pid and _running(job_pid):
            os.kill(job_pid, signal.SIGKILL)
