"""Continuity and clock health learned from capture times (drivers/continuity.py)."""

from __future__ import annotations

from drivers.continuity import ContinuityTracker

MS = 1_000_000


def feed(tracker, stamps, offsets=None):
    closed = []
    for i, ts in enumerate(stamps):
        gap = tracker.observe(ts, None if offsets is None else offsets[i])
        if gap:
            closed.append(gap)
    return closed


def test_a_stall_longer_than_three_usual_intervals_is_one_gap_with_start_and_length():
    seen = []
    tracker = ContinuityTracker(nominal_hz=10.0, on_gap=seen.append)
    stamps = [i * 100 * MS for i in range(20)]  # 10 Hz
    stamps += [stamps[-1] + 450 * MS + i * 100 * MS for i in range(10)]  # one 450 ms stall
    stamps += [stamps[-1] + 250 * MS + i * 100 * MS for i in range(10)]  # 250 ms: late, not a gap
    closed = feed(tracker, stamps)
    report = tracker.to_json()
    assert report["gaps"] == 1 and closed == seen == [{"start_ns": 1_900 * MS, "length_ms": 450.0}]
    assert report["last_gap"] == closed[0]
    assert report["usual_interval_ms"] == 100.0 and report["rate_hz"] == 10.0 and report["rate_ratio"] == 1.0


def test_no_gap_is_judged_before_the_interval_is_learned():
    tracker = ContinuityTracker()
    feed(tracker, [0, 100 * MS, 200 * MS, 5_000 * MS])
    assert tracker.gaps == 0


def test_an_open_stall_is_reported_while_it_lasts():
    tracker = ContinuityTracker()
    feed(tracker, [i * 100 * MS for i in range(20)])
    assert tracker.to_json(waited_ns=200 * MS)["open_gap_ms"] is None
    assert tracker.to_json(waited_ns=1_000 * MS)["open_gap_ms"] == 1000.0 and tracker.gaps == 0


def test_duplicates_and_reordering_are_counted_and_do_not_teach_the_interval():
    tracker = ContinuityTracker(nominal_hz=20.0)
    stamps = [i * 100 * MS for i in range(12)]
    stamps[5:5] = [400 * MS]  # 400 again: a duplicate
    stamps[9:9] = [150 * MS]  # older than the newest: reordered
    feed(tracker, stamps)
    report = tracker.to_json()
    assert (report["duplicates"], report["reordered"], report["gaps"]) == (1, 1, 0)
    assert report["usual_interval_ms"] == 100.0 and report["rate_ratio"] == 0.5  # half the nominal rate


def test_clock_offset_and_steps():
    steps = []
    tracker = ContinuityTracker(on_clock_step=steps.append)
    offsets = [2 * MS] * 5 + [900 * MS] * 5  # the sensor clock stepped back by 898 ms
    feed(tracker, [i * 100 * MS for i in range(10)], offsets)
    report = tracker.to_json()
    assert report["clock_offset_ms"] == 900.0 and report["clock_steps"] == 1 and report["last_clock_step_ms"] == 898.0
    assert steps == [{"start_ns": 500 * MS, "step_ms": 898.0}]
    assert ContinuityTracker().to_json()["clock_offset_ms"] is None
