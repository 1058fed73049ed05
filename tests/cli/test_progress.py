"""Progress on long work when the output is a terminal: records, bytes, rate and ETA."""

from __future__ import annotations


def test_progress_line_has_rate_and_eta():
    from edge.commands.importer import progress_line

    line = progress_line(1200, 50_000_000, 200_000_000, 2.0)
    assert "25.0%" in line and "1200 records" in line and "25.0 MB/s" in line and "ETA 6s" in line


def test_export_progress_on_a_terminal_has_an_eta():
    import io

    from edge.commands.export import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [100.0]
    stream = Terminal()
    bar = ProgressBar(stream, width=10, clock=lambda: now[0])
    now[0] = 110.0  # 10 s for a quarter: 30 s to go
    bar(0.25, "25/100 records, 1.0 MB, 0.1 MB/s")
    assert stream.getvalue().startswith("\rexport [###.......]  25.0%  25/100 records")
    assert "ETA 30s" in stream.getvalue()


def _run_with_stderr_on_a_terminal(args: list[str], env: dict) -> tuple[int, str, str]:
    """Run ``edge ARGS`` with stderr on a pseudo-terminal; (exit code, stdout, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "edge.cli", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=slave, env=env) as proc:
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        out = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(60)
    os.close(master)
    return code, out, shown.decode(errors="replace")


def test_replay_progress_on_a_terminal_has_an_eta_and_none_in_a_pipe(data_dir):
    """``edge replay`` redraws records, MB, rate and ETA on a terminal; a pipe (a log) gets the
    first and the last line only; the ETA of paced playback is the capture time left over the speed."""
    import json
    import os
    import re
    import subprocess
    import sys

    from broker.client import Producer
    from tests.support.broker_process import BrokerProcess

    t0 = 1_767_225_600_000_000_000
    with BrokerProcess(data_dir) as broker:
        with Producer(broker.endpoint, acks="durable") as producer:
            futures = [producer.send("camera.pty", b"x" * 1000, timestamp_ns=t0 + i * 10_000_000) for i in range(150)]
            for future in futures:
                future.result(30)
        env = {**os.environ, "EDGE_ENDPOINT": broker.endpoint}
        replay = ["replay", "--topics", "camera.pty", "--start", "earliest", "--no-control", "--speed", "2"]
        code, out, shown = _run_with_stderr_on_a_terminal(replay, env)
        assert code == 0 and json.loads(out.strip().splitlines()[-1])["records"] == 150, shown
        redraws = re.findall(r"\rplaying .*? (\d+) records .*? MB .*? rec/s .*? ETA (\d+)s", shown)
        assert redraws, shown  # 1.5 s of capture at 2x: redrawn every 0.2 s
        assert all(0 <= int(eta) <= 1 for _, eta in redraws), redraws  # at most 0.75 s left
        assert re.search(r"\rfinished 100\.0% .* 150 records .* ETA 0s", shown), shown
        piped = subprocess.run([sys.executable, "-m", "edge.cli", *replay, "--prefix", "again.", "--speed", "10"],
                               check=False, capture_output=True, text=True, env=env, timeout=60)
        assert piped.returncode == 0 and "\rplaying" not in piped.stderr and "100.0%" in piped.stderr, piped.stderr
