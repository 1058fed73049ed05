"""Offset resets: what a Consumer does when its position is no longer in the log, and the
event that tells the application (Kafka's ``auto.offset.reset`` plus KIP-320 truncation).

Reasons (``OffsetReset.reason``):
- ``retention``: the position is below the log start (retention or the disk guard deleted
  records the reader had not reached): records [from_offset, to_offset) are skipped.
- ``truncated``: crash recovery took back offsets the reader had been served (its log epoch
  ended below its position, or the position is beyond the log end): the reader goes back
  to where the log now continues, ``taken_back`` records it saw no longer exist.
- ``recreated``: the topic was deleted and created again (its id changed): the old topic's
  unread records are gone with it; the reader starts on the new topic by the policy.

Policies: ``earliest`` / ``latest`` reset (to the log start / end; a truncation always goes
back to where the log continues, so no new record is skipped) and report; ``error`` (or
Kafka's ``none``) moves nothing and raises the typed error carrying the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LogTruncatedError, OffsetOutOfRangeError, TopicRecreatedError

RESET_POLICIES = ("earliest", "latest", "error", "none")


@dataclass(frozen=True, slots=True)
class OffsetReset:
    topic: str
    partition: int
    reason: str  # retention | truncated | recreated
    from_offset: int  # the reader's position
    to_offset: int  # where it goes on (what the policy chose, or would choose)
    skipped: int  # records in the log the reader will never receive
    taken_back: int  # records it was served that the log no longer holds
    policy: str

    def describe(self) -> str:
        where = f"{self.topic}/{self.partition}"
        if self.reason == "retention":
            what = (f"offsets {self.from_offset}..{self.to_offset - 1} ({self.skipped} records) were deleted "
                    f"before they were read")
        elif self.reason == "truncated":
            what = (f"crash recovery took back offsets {self.to_offset}..{self.from_offset - 1} "
                    f"({self.taken_back} records already read); the log goes on at {self.to_offset}")
        else:
            what = (f"the topic was deleted and re-created (position {self.from_offset} belonged to the old one)"
                    + (f"; {self.skipped} records of the new one skipped" if self.skipped else ""))
        if self.policy in ("error", "none"):
            return f"{where}: {what} (auto_offset_reset={self.policy}: not moved; seek to go on)"
        return f"{where}: {what}; continuing at {self.to_offset}"

    def error(self) -> OffsetOutOfRangeError:
        cls = {"truncated": LogTruncatedError, "recreated": TopicRecreatedError}.get(self.reason, OffsetOutOfRangeError)
        err = cls(self.describe())
        err.reset = self
        return err


def reset_for(entry: dict[str, Any], position: int, policy: str, *, recreated: bool = False) -> OffsetReset:
    """The reset a fetch reply entry calls for (an OFFSET_OUT_OF_RANGE or LOG_TRUNCATED
    error, or a changed topic id) at ``position`` under ``policy``."""
    topic, partition = entry["topic"], entry["partition"]
    start, end = int(entry.get("log_start", 0)), int(entry.get("next_offset", 0))
    if recreated:
        to = end if policy == "latest" else start
        return OffsetReset(topic, partition, "recreated", position, to, to - start, 0, policy)
    if entry.get("error") == LogTruncatedError.code or position > end:
        to = min(int(entry.get("truncated_to", end)), position)
        return OffsetReset(topic, partition, "truncated", position, to, 0, position - to, policy)
    to = end if policy == "latest" else start
    return OffsetReset(topic, partition, "retention", position, to, max(0, to - position), 0, policy)
