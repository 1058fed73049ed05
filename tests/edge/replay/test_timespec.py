"""Time arguments of replay and export: every accepted form, and clear refusals."""

from __future__ import annotations

import pytest

from edge.replay.timespec import EARLIEST_NS, OffsetPoint, TimeSpecError, Window, format_ns, parse_point, parse_window

NOW = 1_795_000_000_000_000_000


def test_iso_epoch_relative_and_keywords():
    assert parse_point("2026-11-22T10:00:00Z") == 1_795_341_600_000_000_000
    assert parse_point("2026-11-22 11:00:00.250+01:00") == 1_795_341_600_250_000_000
    assert parse_point("2026-11-22T10:00:00") == 1_795_341_600_000_000_000  # no zone: UTC
    assert parse_point("1795341600000000000") == 1_795_341_600_000_000_000
    assert parse_point("-10m", now_ns=NOW) == NOW - 600 * 10**9
    assert parse_point("-1.5h", now_ns=NOW) == NOW - 5400 * 10**9
    assert parse_point("+30s", role="end", start_ns=NOW) == NOW + 30 * 10**9
    assert parse_point("earliest") == EARLIEST_NS
    assert parse_point("now", now_ns=NOW) == NOW


def test_offset_point():
    assert parse_point("camera.front:0:1200") == OffsetPoint("camera.front", 0, 1200)
    assert str(OffsetPoint("lidar.top", 2, 5)) == "lidar.top:2:5"


def test_drive_names_through_the_resolver():
    calls = []

    def resolver(name):
        calls.append(name)
        if name != "drive-20261122-101500":
            raise LookupError("no drive named " + name)
        return (NOW, NOW + 60 * 10**9, ["camera.front"])

    assert parse_point("drive-20261122-101500", resolver=resolver) == NOW
    assert parse_point("drive-20261122-101500", role="end", resolver=resolver) == NOW + 60 * 10**9
    spec = parse_window(drive="drive-20261122-101500", resolver=resolver, start="+10s", end="+20s")
    assert (spec.start, spec.end, spec.drive_topics) == (NOW + 10 * 10**9, NOW + 20 * 10**9, ("camera.front",))
    with pytest.raises(TimeSpecError, match=r"drive 'drive-x'.*no drive named drive-x"):
        parse_point("drive-x", resolver=resolver)


@pytest.mark.parametrize("text, message", [
    ("", "empty time"),
    ("1795341600", "looks like epoch seconds"),
    ("yesterday-ish!", "invalid time"),
    ("2026-13-45T00:00:00", "invalid time"),
    ("-10 parsecs", "invalid time .*a relative time is a sign and a duration"),
])
def test_refusals_name_the_text_and_the_forms(text, message):
    with pytest.raises(TimeSpecError, match=message):
        parse_point(text, now_ns=NOW)


def test_plus_duration_only_for_an_end():
    with pytest.raises(TimeSpecError, match="only an end"):
        parse_point("+30s", role="start")


def test_window_defaults_and_order():
    spec = parse_window(now_ns=NOW)
    assert (spec.start, spec.end) == (EARLIEST_NS, NOW)
    spec = parse_window("-10m", "+1m", now_ns=NOW)
    assert spec.end - spec.start == 60 * 10**9
    with pytest.raises(TimeSpecError, match=r"ends .* before it starts"):
        parse_window("-1m", "-2m", now_ns=NOW)
    with pytest.raises(TimeSpecError, match="need the vehicle broker"):
        parse_window(drive="drive-1")


def test_window_with_start_drops_offset_starts():
    window = Window(10, 100, {("t", 0): 5}, {("t", 0): 50})
    later = window.with_start(40)
    assert (later.start_ns, later.end_ns, later.start_offsets, later.end_offsets) == (40, 100, {}, {("t", 0): 50})
    assert window.with_start(5).start_ns == 10
    assert format_ns(1_795_341_600_250_000_000) == "2026-11-22T10:00:00.250Z"
