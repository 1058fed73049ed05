"""The one time grammar (broker.base.timespec): every form either old parser accepted
(edge/commands/common.py for CLI flags and API parameters, edge/replay/timespec.py for
windows) is accepted by both callers, and every refusal has the one message shape."""

from __future__ import annotations

import pytest

from broker.base.timespec import EARLIEST_NS, FORMS, OffsetPoint, TimeSpecError, parse_point, parse_time_ns
from edge.commands.common import parse_time_ns as cli_time_ns
from edge.commands.failures import UsageError
from edge.replay.timespec import parse_point as replay_point

NOW = 1_795_000_000_000_000_000
T = 1_795_341_600_000_000_000  # 2026-11-22T10:00:00Z


@pytest.mark.parametrize("text, expected", [
    ("2026-11-22T10:00:00Z", T),
    ("2026-11-22T10:00:00+00:00", T),
    ("2026-11-22 11:00:00.250+01:00", T + 250_000_000),
    ("2026-11-22T10:00:00", T),  # no zone: UTC
    ("2026-11-22", T - 10 * 3600 * 10**9),
    ("20261122T100000Z", T),  # basic ISO format (read by the CLI's parser before)
    ("1795341600000000000", T),  # epoch ns
    ("0", 0),
    ("  1795341600000000000 ", T),  # blanks around are ignored
    ("-10m", NOW - 600 * 10**9),
    ("-1.5h", NOW - 5400 * 10**9),
    ("-30s", NOW - 30 * 10**9),
    ("30s ago", NOW - 30 * 10**9),
    ("5m AGO", NOW - 300 * 10**9),
    ("earliest", EARLIEST_NS),
    ("beginning", EARLIEST_NS),
    ("now", NOW),
    ("Latest", NOW),
])
def test_every_time_form_reads_the_same_in_every_caller(text, expected):
    assert parse_point(text, now_ns=NOW) == expected
    assert parse_time_ns(text, now_ns=NOW) == expected
    assert cli_time_ns(text, now_ns=NOW) == expected
    assert replay_point(text, now_ns=NOW) == expected


def test_plus_duration_counts_from_the_start_of_an_end_only():
    assert parse_point("+30s", role="end", start_ns=T) == T + 30 * 10**9
    with pytest.raises(TimeSpecError, match=r"invalid time '\+30s': .*only an end"):
        parse_point("+30s", role="start")


def test_offsets_and_drive_names():
    assert parse_point("camera.front:0:1200") == OffsetPoint("camera.front", 0, 1200)
    with pytest.raises(TimeSpecError, match=r"record offset .* is not a time here"):
        parse_time_ns("camera.front:0:1200")

    def resolver(name):
        if name == "2026drive":
            return (T, T + 10**9)
        raise LookupError(f"no drive named {name}")

    assert parse_point("2026drive", role="end", resolver=resolver) == T + 10**9  # a year-like prefix, not ISO
    assert parse_time_ns("2026drive", resolver=resolver) == T
    with pytest.raises(TimeSpecError, match="drive 'other': no drive named other"):
        parse_point("other", resolver=resolver)


@pytest.mark.parametrize("text, why", [
    ("yesterday", "expected ISO-8601"),
    ("2026-13-45T00:00:00", "expected ISO-8601"),
    ("1795341600", "looks like epoch seconds or milliseconds; give nanoseconds \\(1795341600000000000 \\?\\)"),
    ("-10 parsecs", "a relative time is a sign and a duration"),
    ("10 parsecs ago", "a relative time is a sign and a duration"),
    ("drive-1", "expected ISO-8601.* \\(drive names need the vehicle broker\\)"),
])
def test_refusals_have_one_shape_naming_the_text(text, why):
    pattern = f"^invalid time '{text}': {why}"
    with pytest.raises(TimeSpecError, match=pattern):
        parse_point(text, now_ns=NOW)
    with pytest.raises(UsageError, match=pattern):  # the CLI's flags: a usage error (exit 2), same words
        cli_time_ns(text, now_ns=NOW)


def test_the_forms_are_named_once():
    with pytest.raises(TimeSpecError) as refused:
        parse_point("yesterday")
    assert str(refused.value).endswith(FORMS + " (drive names need the vehicle broker)")
    with pytest.raises(TimeSpecError, match="empty time"):
        parse_point("   ")
