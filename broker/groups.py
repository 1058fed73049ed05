"""Consumer groups: durable committed offsets and partition assignment among live members.

Guarantees:
- Committed offsets are stored per group in ``DATA/_groups/<group>.json`` with the
  crash-safe recipe (temp, fsync, rename, fsync dir) before the commit is acknowledged.
  A missing or unreadable file is reported and the group starts with no offsets.
  File: ``{"group": name, "offsets": [[topic, partition, offset], ...], "metadata":
  [[topic, partition, text], ...]}``; ``metadata`` (Kafka OffsetCommit's metadata string,
  kept only where non-empty, optional when read) is replaced or cleared by every commit of
  its partition, native commits included, as Kafka replaces both together.
- Assignment: the partitions of the group's subscribed topics, sorted, dealt round-robin
  over the members sorted by id. Every join, leave or expiry bumps the generation; a
  heartbeat with an old generation gets ``rebalance: true`` and the new assignment.
- Hand-over (as Kafka's cooperative rebalance): a partition moving from member A to B is
  handed to B only after A's next request following the one that took it away (A commits
  what it revokes before that request), so two members never read a partition at once
  and B starts at A's last commit. Until then B's list lacks it; a later heartbeat of B
  gets ``rebalance: true`` (same generation) with the partition added.
  Commits from stale generations are still accepted because offsets only matter per
  partition and are idempotent for a given record.
- Members that do not heartbeat within their session timeout are removed.

Not thread-safe: the broker's event loop owns the coordinator.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .errors import InvalidRequestError, UnknownGroupMemberError
from .logs import log_event
from .storage.layout import GROUPS_DIR, atomic_write

logger = logging.getLogger("broker.groups")

_GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def validate_group_name(name: object) -> str:
    if not isinstance(name, str) or not _GROUP_NAME.match(name) or set(name) == {"."}:
        raise InvalidRequestError(
            f"invalid group name {name!r}: 1-200 of letters, digits, '.', '_', '-'"
        )
    return name


class GroupDescription(TypedDict):
    """One native group as ListGroups shows it (the native protocol's reply, JSON)."""

    generation: int
    members: dict[str, list[list[str | int]]]  # member id -> the [topic, partition] pairs it was handed
    offsets: list[list[str | int]]  # [topic, partition, committed offset]


@dataclass
class Member:
    member_id: str
    topics: list[str]
    session_timeout_s: float
    last_seen: float = field(default_factory=time.monotonic)


@dataclass
class Group:
    name: str
    generation: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    assignment: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # the target
    handed: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # last list each member got
    holding: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # what it has applied
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    metadata: dict[tuple[str, int], str] = field(default_factory=dict)  # non-empty strings only


class GroupCoordinator:
    def __init__(self, data_dir: Path, partitions_of: Callable[[str], int]):
        """``partitions_of(topic)`` returns the partition count (0 for unknown topics)."""
        self.directory = data_dir / GROUPS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.partitions_of = partitions_of
        self.groups: dict[str, Group] = {}
        self._load()

    # -- persistence ---------------------------------------------------------------------

    def _load(self) -> None:
        for path in sorted(self.directory.glob("*.json")):
            name = path.stem
            try:
                raw = json.loads(path.read_text())
                offsets = {(str(t), int(p)): int(o) for t, p, o in raw["offsets"]}
                metadata = {(str(t), int(p)): str(m) for t, p, m in raw.get("metadata", [])}
            except (ValueError, KeyError, TypeError) as exc:
                log_event(logger, logging.ERROR, "group_offsets_unreadable", group=name, path=path, reason=exc,
                          effect="group starts without committed offsets")
                continue
            self.groups[name] = Group(name, offsets=offsets, metadata=metadata)

    def _save(self, group: Group, offsets: dict[tuple[str, int], int] | None = None,
              metadata: dict[tuple[str, int], str] | None = None) -> None:
        offsets = group.offsets if offsets is None else offsets
        metadata = group.metadata if metadata is None else metadata
        body = {"group": group.name, "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
                "metadata": [[t, p, m] for (t, p), m in sorted(metadata.items())]}
        atomic_write(self.directory / f"{group.name}.json", json.dumps(body).encode())

    def group(self, name: str) -> Group:
        validate_group_name(name)
        return self.groups.setdefault(name, Group(name))

    # -- offsets -------------------------------------------------------------------------

    def commit(self, name: str, offsets: dict[tuple[str, int], int],
               metadata: dict[tuple[str, int], str] | None = None) -> None:
        """Durable before it counts: a failed write (full disk) raises and changes nothing.
        ``metadata`` gives the committed partitions' metadata strings; a committed partition
        not in it has its old string cleared."""
        group = self.group(name)
        committed = {**group.offsets, **offsets}
        kept = {tp: text for tp, text in group.metadata.items() if tp not in offsets}
        kept.update({tp: text for tp, text in (metadata or {}).items() if text and tp in offsets})
        self._save(group, committed, kept)
        group.offsets = committed
        group.metadata = kept

    def fetch_metadata(self, name: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The metadata strings committed with these partitions' offsets (absent: none)."""
        group = self.groups.get(validate_group_name(name))
        if group is None:
            return {}
        return {tp: group.metadata[tp] for tp in partitions if tp in group.metadata}

    def fetch(self, name: str, partitions: list[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        group = self.groups.get(validate_group_name(name))
        if group is None:
            return {}
        if partitions is None:
            return dict(group.offsets)
        return {tp: group.offsets[tp] for tp in partitions if tp in group.offsets}

    def forget_topic(self, topic: str) -> None:
        for group in self.groups.values():
            stale = [tp for tp in group.offsets if tp[0] == topic]
            if stale:
                for tp in stale:
                    del group.offsets[tp]
                    group.metadata.pop(tp, None)
                self._save(group)

    # -- membership ----------------------------------------------------------------------

    def join(self, name: str, member_id: str | None, topics: list[str],
             session_timeout_s: float) -> tuple[str, int, list[tuple[str, int]]]:
        group = self.group(name)
        member_id = member_id or f"m-{uuid.uuid4().hex[:12]}"
        existing = group.members.get(member_id)
        group.members[member_id] = Member(member_id, sorted(set(topics)), session_timeout_s)
        group.holding[member_id] = group.handed.get(member_id, []) if existing is not None else []
        if existing is None or existing.topics != sorted(set(topics)):
            self._rebalance(group, f"member {member_id} joined")
        return member_id, group.generation, self._hand_out(group, member_id)

    def heartbeat(self, name: str, member_id: str, generation: int) -> tuple[bool, int, list[tuple[str, int]]]:
        group = self.group(name)
        member = group.members.get(member_id)
        if member is None:
            raise UnknownGroupMemberError(f"member {member_id!r} is not in group {name!r}; join again")
        member.last_seen = time.monotonic()
        # new partitions of subscribed topics also trigger a rebalance
        if self._wanted_partitions(group) != sorted(tp for a in group.assignment.values() for tp in a):
            self._rebalance(group, "partitions changed")
        previous = group.handed.get(member_id, [])
        group.holding[member_id] = previous  # applied (and revoked ones committed) before this request
        mine = self._hand_out(group, member_id)
        return generation != group.generation or mine != previous, group.generation, mine

    @staticmethod
    def _hand_out(group: Group, member_id: str) -> list[tuple[str, int]]:
        """The member's target partitions that no other member still holds or was handed."""
        busy: set[tuple[str, int]] = set()
        for other in group.members:
            if other != member_id:
                busy.update(group.holding.get(other, ()))
                busy.update(group.handed.get(other, ()))
        mine = [tp for tp in group.assignment.get(member_id, []) if tp not in busy]
        group.handed[member_id] = mine
        return mine

    def leave(self, name: str, member_id: str) -> None:
        group = self.group(name)
        if group.members.pop(member_id, None) is not None:
            self._forget_member(group, member_id)
            self._rebalance(group, f"member {member_id} left")

    @staticmethod
    def _forget_member(group: Group, member_id: str) -> None:
        group.handed.pop(member_id, None)
        group.holding.pop(member_id, None)

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for group in self.groups.values():
            dead = [m.member_id for m in group.members.values() if now - m.last_seen > m.session_timeout_s]
            for member_id in dead:
                del group.members[member_id]
                self._forget_member(group, member_id)
            if dead:
                self._rebalance(group, f"session expired: {', '.join(dead)}")

    def _wanted_partitions(self, group: Group) -> list[tuple[str, int]]:
        topics = sorted({t for m in group.members.values() for t in m.topics})
        return sorted((t, p) for t in topics for p in range(self.partitions_of(t)))

    def _rebalance(self, group: Group, reason: str) -> None:
        group.generation += 1
        members = sorted(group.members)
        assignment: dict[str, list[tuple[str, int]]] = {m: [] for m in members}
        if members:
            candidates = self._wanted_partitions(group)
            i = 0
            for tp in candidates:
                # deal to the next member subscribed to this topic
                for _ in range(len(members)):
                    member = members[i % len(members)]
                    i += 1
                    if tp[0] in group.members[member].topics:
                        assignment[member].append(tp)
                        break
        group.assignment = assignment
        log_event(logger, logging.INFO, "group_rebalanced", group=group.name, generation=group.generation,
                  members=len(members), reason=reason)

    def describe(self) -> dict[str, GroupDescription]:
        return {
            name: {
                "generation": g.generation,
                # what each member was handed (reads), which lags the target during a hand-over
                "members": {m: [list(tp) for tp in g.handed.get(m, [])] for m in g.members},
                "offsets": [[t, p, o] for (t, p), o in sorted(g.offsets.items())],
            }
            for name, g in self.groups.items()
        }
