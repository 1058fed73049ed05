"""Offset resets (broker.client.resets): the event a fetch entry calls for under each policy."""

from __future__ import annotations

import pytest

from broker.client.resets import reset_for
from broker.errors import LogTruncatedError, OffsetOutOfRangeError, TopicRecreatedError

OUT_OF_RANGE = {"topic": "t", "partition": 1, "error": OffsetOutOfRangeError.code, "log_start": 640, "next_offset": 900}


@pytest.mark.parametrize("policy, to, skipped", [("earliest", 640, 540), ("latest", 900, 800), ("error", 640, 540)])
def test_below_the_log_start_skips_to_where_the_policy_says(policy, to, skipped):
    event = reset_for(OUT_OF_RANGE, 100, policy)
    assert (event.reason, event.from_offset, event.to_offset, event.skipped, event.taken_back) == (
        "retention", 100, to, skipped, 0)
    assert f"offsets 100..{to - 1} ({skipped} records) were deleted" in event.describe()


@pytest.mark.parametrize("policy", ["earliest", "latest"])
def test_a_truncation_goes_back_to_where_the_log_goes_on_whatever_the_policy(policy):
    beyond_end = reset_for(OUT_OF_RANGE, 1000, policy)
    assert (beyond_end.reason, beyond_end.to_offset, beyond_end.taken_back, beyond_end.skipped) == (
        "truncated", 900, 100, 0)
    epoch_ended = reset_for({**OUT_OF_RANGE, "error": LogTruncatedError.code, "truncated_to": 850}, 880, policy)
    assert (epoch_ended.reason, epoch_ended.to_offset, epoch_ended.taken_back) == ("truncated", 850, 30)


def test_the_error_of_each_reason_is_typed_and_carries_the_event():
    cases = [(reset_for(OUT_OF_RANGE, 5, "error"), OffsetOutOfRangeError),
             (reset_for(OUT_OF_RANGE, 950, "none"), LogTruncatedError),
             (reset_for({**OUT_OF_RANGE, "error": 0}, 950, "error", recreated=True), TopicRecreatedError)]
    for event, kind in cases:
        error = event.error()
        assert type(error) is kind and error.reset is event and "seek to go on" in error.message
