"""The player on an in-memory stream and sink: order, headers, timing, control, loop.

The broker is not under test here (tests/integration/test_replay.py replays through a real
one); the clock is real, so timing is measured as it will be on a vehicle."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from broker.records import Record
from edge.replay.errors import ReplayError
from edge.replay.merge import MergedStream
from edge.replay.player import Player, ReplayOptions
from edge.replay.timespec import Window

T0 = 1_795_000_000_000_000_000
MS = 1_000_000


class ListStream:
    def __init__(self, records, window):
        self.records = [r for r in records if window.start_ns <= r.timestamp < window.end_ns]
        self.closed = False

    def __iter__(self):
        return iter(self.records)

    def close(self):
        self.closed = True


class MemorySink:
    def __init__(self):
        self.out: list[tuple[Record, dict, int, float]] = []
        self.flushed = 0

    def emit(self, record, headers, timestamp_ns):
        self.out.append((record, dict(headers), timestamp_ns, time.monotonic()))

    def flush(self):
        self.flushed += 1

    def close(self):
        pass


def mixed_records(seconds: float, camera_hz=30, lidar_hz=10):
    """Two cameras and a LiDAR as their drivers write them: one partition each."""
    parts = []
    for topic, hz, phase in (("camera.front", camera_hz, 0), ("camera.rear", camera_hz, 7 * MS),
                             ("lidar.top", lidar_hz, 3 * MS)):
        n = int(seconds * hz)
        parts.append([Record(i, T0 + phase + i * 10**9 // hz, None, b"x" * 100, {"seq": b"%d" % i}, topic, 0)
                      for i in range(n)])
    return parts


def make_player(parts, sink, window=None, **options):
    window = window or Window(T0, T0 + 3600 * 10**9)
    factory = lambda w: MergedStream(ListStream(p, w) for p in parts)  # noqa: E731
    return Player(factory, window, sink, ReplayOptions(**options))


def test_as_fast_as_possible_merges_by_capture_time_with_replay_headers():
    parts = mixed_records(2.0)
    sink = MemorySink()
    status = make_player(parts, sink, speed=None, replay_id="r1").run()
    stamps = [ts for _r, _h, ts, _t in sink.out]
    assert len(sink.out) == sum(map(len, parts)) == status.records == 140
    assert stamps == sorted(stamps)
    record, headers, ts, _ = sink.out[1]
    assert headers["seq"] == str(record.offset).encode() and ts == record.timestamp
    assert headers["replay.source.topic"] == record.topic.encode()
    assert headers["replay.source.partition"] == b"0" and headers["replay.source.offset"] == b"%d" % record.offset
    assert headers["replay.id"] == b"r1"
    assert status.state == "finished" and status.fraction == 1.0 and sink.flushed == 1


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_timing_follows_the_recording(speed):
    parts = mixed_records(3.0)
    sink = MemorySink()
    status = make_player(parts, sink, speed=speed).run()
    out = sink.out
    errors_ms = []
    for (r0, _h0, _s0, t0), (r1, _h1, _s1, t1) in itertools.pairwise(out):
        recorded = (r1.timestamp - r0.timestamp) / 1e9 / speed
        errors_ms.append(abs((t1 - t0) - recorded) * 1e3)
    errors_ms.sort()
    p99 = errors_ms[int(len(errors_ms) * 0.99)]
    wall = out[-1][3] - out[0][3]
    recorded_span = (out[-1][0].timestamp - out[0][0].timestamp) / 1e9 / speed
    assert abs(wall - recorded_span) < 0.05, (wall, recorded_span)  # no drift over the run
    assert p99 < 15.0, f"p99 interval error {p99:.2f} ms"  # generous: the benchmark measures precisely
    assert status.lateness["count"] == len(out)


def test_pause_resume_speed_and_seek_from_another_thread():
    parts = mixed_records(20.0)
    sink = MemorySink()
    player = make_player(parts, sink, speed=1.0)
    thread = threading.Thread(target=player.run)
    thread.start()
    try:
        time.sleep(0.5)
        player.pause()
        time.sleep(0.1)
        paused_at = len(sink.out)
        time.sleep(0.5)
        assert len(sink.out) == paused_at and player.status().state == "paused"
        player.resume()
        time.sleep(0.3)
        assert len(sink.out) > paused_at and player.status().state == "playing"
        player.set_speed(10.0)
        time.sleep(0.3)
        assert player.status().speed == 10.0
        position = player.status().position_ns
        # at 10x, 0.3 s of wall time covers about 3 s of recording
        assert position - T0 > 1.5 * 10**9
        player.seek(T0 + 15 * 10**9)
        time.sleep(0.2)
        after_seek = [r.timestamp for r, _h, _s, _t in sink.out[-5:]]
        assert min(after_seek) >= T0 + 15 * 10**9
        with pytest.raises(ReplayError, match=r"outside 0.1–10"):
            player.set_speed(50)
    finally:
        player.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert player.status().state in ("stopped", "finished")


def test_loop_plays_the_window_again_and_stop_ends_it():
    parts = mixed_records(0.5)
    sink = MemorySink()
    player = make_player(parts, sink, speed=None, loop=True)
    thread = threading.Thread(target=player.run)
    thread.start()
    deadline = time.monotonic() + 10
    while player.status().loop_pass < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    player.stop()
    thread.join(10)
    assert player.status().loop_pass >= 3 and player.status().state == "stopped"
    per_pass = sum(map(len, parts))
    assert len(sink.out) >= 2 * per_pass
    assert [r.offset for r, *_ in sink.out[per_pass:per_pass + 3]] == [r.offset for r, *_ in sink.out[:3]]


def test_speed_outside_the_range_is_refused():
    with pytest.raises(ReplayError, match="speed 20 is outside"):
        make_player(mixed_records(0.1), MemorySink(), speed=20)


def test_a_failing_sink_fails_the_replay():
    class BrokenSink(MemorySink):
        def emit(self, record, headers, timestamp_ns):
            raise ReplayError("disk full at the destination")

    player = make_player(mixed_records(0.2), BrokenSink(), speed=None)
    with pytest.raises(ReplayError, match="disk full"):
        player.run()
    assert player.status().state == "failed"


def _stepped_clock_records():
    """A camera at 20 Hz whose recording clock steps back 2 s after 1 s, then forward 1 h."""
    stamps = [T0 + i * 50 * MS for i in range(20)]                        # 1 s
    stamps += [T0 - 1000 * MS + i * 50 * MS for i in range(20)]           # back 2 s, 1 s more
    stamps += [T0 + 3600 * 10**9 + i * 50 * MS for i in range(20)]       # forward 1 h, 1 s more
    return [Record(i, ts, None, b"x", {}, "camera.front", 0) for i, ts in enumerate(stamps)]


def test_clock_steps_in_the_recording_neither_burst_nor_stall():
    records = _stepped_clock_records()
    sink = MemorySink()
    window = Window(T0 - 10 * 10**9, T0 + 3700 * 10**9)
    started = time.monotonic()
    status = make_player([records], sink, window=window, speed=1.0).run()
    wall = time.monotonic() - started
    assert [r.offset for r, *_ in sink.out] == list(range(60)), "offset order kept across the steps"
    assert status.gaps == 1 and status.reanchors >= 1
    assert 2.6 < wall < 4.0, f"three seconds of recording took {wall:.2f}s"
    emitted = [t for *_x, t in sink.out]
    # each second of recording takes a second to play (a burst after the backward step would
    # take none); the first record of a second may go at once, so measure from the second one
    for start in (0, 20, 40):
        span = emitted[start + 19] - emitted[start + 1]
        assert 0.8 < span < 1.1, (start, span)


def test_max_gap_zero_keeps_gaps():
    records = [Record(i, T0 + i * 700 * MS, None, b"x", {}, "lidar.top", 0) for i in range(3)]
    sink = MemorySink()
    started = time.monotonic()
    status = make_player([records], sink, speed=1.0, max_gap_s=0.5).run()
    assert status.gaps == 2 and time.monotonic() - started < 0.5
    sink = MemorySink()
    started = time.monotonic()
    status = make_player([records], sink, speed=1.0, max_gap_s=0).run()
    assert status.gaps == 0 and time.monotonic() - started > 1.3


def test_eta_at_max_speed_predicts_the_end():
    """At a steady rate the ETA of a status mid-run is the time the run still takes; a loop has
    none (it never ends), a finished run 0."""
    import itertools

    ticks = itertools.count()
    records = [Record(i, T0 + i * 10 * MS, None, b"x", {}, "camera.front", 0) for i in range(200)]
    statuses = []
    player = Player(lambda w: ListStream(records, w), Window(T0, T0 + 2 * 10**9), MemorySink(),
                    ReplayOptions(speed=None, progress_interval_s=0.0), span=(T0, T0 + 199 * 10 * MS),
                    on_progress=statuses.append, clock=lambda: next(ticks) * 0.001)
    final = player.run()
    middle = [s for s in statuses if s.fraction and 0.2 < s.fraction < 0.8]
    assert middle and final.eta_s == 0.0
    for status in middle:
        still_to_go = final.elapsed_s - status.elapsed_s
        assert status.eta_s == pytest.approx(still_to_go, rel=0.05, abs=0.01), status
    looped = []
    looping = Player(lambda w: ListStream(records, w), Window(T0, T0 + 2 * 10**9), MemorySink(),
                     ReplayOptions(speed=None, loop=True, progress_interval_s=0.0), span=(T0, T0 + 199 * 10 * MS),
                     on_progress=lambda s: looped.append(s) or (s.records > 300 and looping.stop()),
                     clock=lambda: next(ticks) * 0.001)
    looping.run()
    assert any(s.fraction and s.fraction > 0.5 for s in looped) and all(s.eta_s is None for s in looped)
