"""Kafka-protocol consumer groups: the classic JoinGroup / SyncGroup / Heartbeat / LeaveGroup
state machine (client-side assignment), with committed offsets kept in the one store the
native groups use (broker/groups.py ``GroupCoordinator``).

States (as Kafka's GroupCoordinator): Empty -> PreparingRebalance -> CompletingRebalance ->
Stable; a join, leave or session expiry moves a non-empty group back to PreparingRebalance.

Invariants:
- A rebalance completes once every member of the previous generation has re-joined, or at
  the rebalance deadline (the longest member rebalance timeout), when members that did
  not re-join are removed. Then the generation is bumped, the leader gets every member's
  metadata, and all parked JoinGroup calls are answered.
- In CompletingRebalance, SyncGroup calls are parked until the leader's SyncGroup brings
  the assignments; then all are answered and the group is Stable.
- A member that does not heartbeat (or join, sync, commit) within its session timeout is
  removed and the group rebalances.
- Answers use Kafka's error codes: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
  REBALANCE_IN_PROGRESS, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID.

Not thread-safe: the broker's event loop owns it. Parked calls are answered through the
``respond`` callbacks given with them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from ..errors import BrokerError
from ..groups import validate_group_name
from ..logs import log_event
from .codec import ResponseValues

logger = logging.getLogger("broker.kafka.groups")

NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27

EMPTY, PREPARING, COMPLETING, STABLE = "Empty", "PreparingRebalance", "CompletingRebalance", "Stable"

Respond = Callable[[ResponseValues], None]


class KafkaMemberDescription(TypedDict):
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    member_metadata: bytes
    member_assignment: bytes


class KafkaGroupDescription(TypedDict):
    """A group as DescribeGroups answers it (and ListGroups reads it)."""

    group_state: str
    protocol_type: str
    protocol_data: str
    members: list[KafkaMemberDescription]


@dataclass
class KafkaMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_s: float
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    last_seen: float = field(default_factory=time.monotonic)
    join_waiter: Respond | None = None
    sync_waiter: Respond | None = None

    def metadata_for(self, protocol: str) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")


@dataclass
class KafkaGroup:
    name: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str = ""
    protocol: str = ""
    leader: str = ""
    members: dict[str, KafkaMember] = field(default_factory=dict)
    rebalance_deadline: float = 0.0


class KafkaGroupCoordinator:
    def __init__(self) -> None:
        self.groups: dict[str, KafkaGroup] = {}

    @staticmethod
    def valid_name(name: str) -> bool:
        try:
            validate_group_name(name)
        except BrokerError:
            return False
        return True

    def _group(self, name: str) -> KafkaGroup:
        return self.groups.setdefault(name, KafkaGroup(name))

    # -- join / sync ----------------------------------------------------------------------

    def join(self, name: str, member_id: str, *, group_instance_id: str | None, client_id: str, client_host: str,
             session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
             protocols: list[tuple[str, bytes]], respond: Respond) -> None:
        if not self.valid_name(name):
            respond({"error_code": INVALID_GROUP_ID, "member_id": member_id})
            return
        group = self._group(name)
        if member_id and member_id not in group.members:
            respond({"error_code": UNKNOWN_MEMBER_ID, "member_id": member_id})
            return
        if group.members and (protocol_type != group.protocol_type or not self._common_protocols(group, protocols)):
            respond({"error_code": INCONSISTENT_GROUP_PROTOCOL, "member_id": member_id})
            return
        member_id = member_id or f"{client_id or 'member'}-{uuid.uuid4()}"
        member = group.members.get(member_id)
        if member is None:
            member = KafkaMember(member_id, group_instance_id, client_id, client_host, session_timeout_ms / 1000,
                                 max(rebalance_timeout_ms, session_timeout_ms) / 1000, protocols)
            group.members[member_id] = member
            changed = True
        else:
            changed = member.protocols != protocols or group.state != STABLE or member_id == group.leader
            member.protocols = protocols
            member.last_seen = time.monotonic()
        group.protocol_type = protocol_type
        if not changed:  # a stable member re-joining with nothing new: the current generation
            respond(self._join_answer(group, member, []))
            return
        member.join_waiter = respond
        self._prepare_rebalance(group, f"member {member_id} joined")
        self._maybe_complete_join(group)

    @staticmethod
    def _join_answer(group: KafkaGroup, member: KafkaMember, everyone: list[dict[str, object]]) -> dict[str, object]:
        return {"error_code": NONE, "generation_id": group.generation, "protocol_type": group.protocol_type,
                "protocol_name": group.protocol, "leader": group.leader, "member_id": member.member_id,
                "members": everyone if member.member_id == group.leader else []}

    def _common_protocols(self, group: KafkaGroup, protocols: list[tuple[str, bytes]]) -> list[str]:
        names = [name for name, _ in protocols]
        for member in group.members.values():
            theirs = {n for n, _ in member.protocols}
            names = [n for n in names if n in theirs]
        return names

    def _prepare_rebalance(self, group: KafkaGroup, reason: str) -> None:
        if group.state == COMPLETING:
            for member in group.members.values():
                self._answer_sync(member, {"error_code": REBALANCE_IN_PROGRESS})
        if group.state != PREPARING:
            timeout = max((m.rebalance_timeout_s for m in group.members.values()), default=0.0)
            group.rebalance_deadline = time.monotonic() + timeout
            group.state = PREPARING
            log_event(logger, logging.INFO, "kafka_group_rebalancing", group=group.name, reason=reason)

    def _maybe_complete_join(self, group: KafkaGroup, *, deadline_passed: bool = False) -> None:
        if group.state != PREPARING:
            return
        missing = [m for m in group.members.values() if m.join_waiter is None]
        if missing and not deadline_passed:
            return
        for member in missing:
            del group.members[member.member_id]
        group.generation += 1
        if not group.members:
            group.state, group.protocol, group.leader, group.protocol_type = EMPTY, "", "", ""
            return
        votes: dict[str, int] = {}
        every = self._common_protocols(group, next(iter(group.members.values())).protocols)
        for member in group.members.values():
            first = next((n for n, _ in member.protocols if n in every), None)
            if first is not None:
                votes[first] = votes.get(first, 0) + 1
        group.protocol = max(every, key=lambda n: (votes.get(n, 0), -every.index(n)))
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        log_event(logger, logging.INFO, "kafka_group_joined", group=group.name, generation=group.generation,
                  members=len(group.members), protocol=group.protocol, leader=group.leader)
        everyone: list[dict[str, object]] = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                     "metadata": m.metadata_for(group.protocol)} for m in group.members.values()]
        for member in group.members.values():
            respond, member.join_waiter = member.join_waiter, None
            member.last_seen = time.monotonic()
            if respond is not None:
                respond(self._join_answer(group, member, everyone))

    def sync(self, name: str, member_id: str, generation: int, assignments: dict[str, bytes], respond: Respond) -> None:
        group = self.groups.get(name)
        error = self._check_member(group, member_id, generation)
        if error or group is None:  # no group: error is UNKNOWN_MEMBER_ID
            respond({"error_code": error})
            return
        member = group.members[member_id]
        member.last_seen = time.monotonic()
        if group.state == PREPARING:
            respond({"error_code": REBALANCE_IN_PROGRESS})
            return
        reply: dict[str, object] = {"error_code": NONE, "protocol_type": group.protocol_type,
                                    "protocol_name": group.protocol}
        if group.state == STABLE:
            respond({**reply, "assignment": member.assignment})
            return
        member.sync_waiter = respond
        if member_id == group.leader:
            for other in group.members.values():
                other.assignment = assignments.get(other.member_id, b"")
            group.state = STABLE
            log_event(logger, logging.INFO, "kafka_group_stable", group=name, generation=group.generation)
            for other in group.members.values():
                self._answer_sync(other, {**reply, "assignment": other.assignment})

    @staticmethod
    def _answer_sync(member: KafkaMember, reply: ResponseValues) -> None:
        respond, member.sync_waiter = member.sync_waiter, None
        if respond is not None:
            respond(reply)

    # -- membership checks ------------------------------------------------------------------

    @staticmethod
    def _check_member(group: KafkaGroup | None, member_id: str, generation: int) -> int:
        if group is None or member_id not in group.members:
            return UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ILLEGAL_GENERATION
        return NONE

    def heartbeat(self, name: str, member_id: str, generation: int) -> int:
        group = self.groups.get(name)
        error = self._check_member(group, member_id, generation)
        if error or group is None:  # no group: error is UNKNOWN_MEMBER_ID
            return error
        group.members[member_id].last_seen = time.monotonic()
        return REBALANCE_IN_PROGRESS if group.state in (PREPARING, COMPLETING) else NONE

    def check_commit(self, name: str, member_id: str, generation: int) -> int:
        """Error code for an OffsetCommit; generation -1 is a commit from outside the group
        (allowed while the group has no members, as Kafka does)."""
        group = self.groups.get(name)
        if generation < 0 and not member_id:
            return NONE if group is None or not group.members else UNKNOWN_MEMBER_ID
        error = self._check_member(group, member_id, generation)
        if error or group is None:  # no group: error is UNKNOWN_MEMBER_ID
            return error
        group.members[member_id].last_seen = time.monotonic()
        return REBALANCE_IN_PROGRESS if group.state == PREPARING else NONE

    def leave(self, name: str, member_ids: list[str]) -> list[int]:
        group = self.groups.get(name)
        codes: list[int] = []
        for member_id in member_ids:
            if group is None or member_id not in group.members:
                codes.append(UNKNOWN_MEMBER_ID)
                continue
            member = group.members.pop(member_id)
            self._answer_sync(member, {"error_code": UNKNOWN_MEMBER_ID})
            if member.join_waiter is not None:
                member.join_waiter({"error_code": UNKNOWN_MEMBER_ID, "member_id": member_id})
            codes.append(NONE)
            self._prepare_rebalance(group, f"member {member_id} left")
        if group is not None:
            self._maybe_complete_join(group)
        return codes

    # -- timers -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for group in self.groups.values():
            if group.state == PREPARING:
                deadlines.append(group.rebalance_deadline)
            deadlines.extend(m.last_seen + m.session_timeout_s for m in group.members.values())
        return min(deadlines, default=None)

    def run_timers(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for group in list(self.groups.values()):
            expired = [m for m in group.members.values()
                       if m.join_waiter is None and now - m.last_seen > m.session_timeout_s]
            for member in expired:
                del group.members[member.member_id]
                self._answer_sync(member, {"error_code": UNKNOWN_MEMBER_ID})
            if expired:
                log_event(logger, logging.INFO, "kafka_group_member_expired", group=group.name,
                          members=",".join(m.member_id for m in expired))
                self._prepare_rebalance(group, "session expired")
            if group.state == PREPARING:
                self._maybe_complete_join(group, deadline_passed=now >= group.rebalance_deadline)

    # -- description ------------------------------------------------------------------------

    def has_members(self, name: str) -> bool:
        group = self.groups.get(name)
        return group is not None and bool(group.members)

    def describe(self, name: str) -> KafkaGroupDescription | None:
        group = self.groups.get(name)
        if group is None:
            return None
        return {
            "group_state": group.state, "protocol_type": group.protocol_type, "protocol_data": group.protocol,
            "members": [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                         "client_id": m.client_id, "client_host": m.client_host,
                         "member_metadata": m.metadata_for(group.protocol), "member_assignment": m.assignment}
                        for m in group.members.values()],
        }
