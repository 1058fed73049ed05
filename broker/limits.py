"""The broker's resource limits: what one client, and all of them, may hold of its memory and
file descriptors, and the counters of what was refused (broker stats, shown in /metrics).

Limits (``BrokerLimits.from_fd_limit``), derived from RLIMIT_NOFILE (the broker raises its
soft limit to the hard one at start; the systemd unit sets 65,536):

- clients: ``min(1024, fd_limit // 4)`` connections (one fd each). Past it, a request from
  a client not among the most recently active ``max_clients`` gets BrokerBusyError.
- partitions: a partition holds 3 fds per segment (the ``.log`` fd and the two index
  mmaps; docs/RELIABILITY.md, soak). What is left after the clients and a reserve of
  ``FD_RESERVE`` is budgeted at two segments per partition:
  ``max_partitions_total = (fd_limit - max_clients - FD_RESERVE) // 6``, and
  ``max_partitions_per_topic = min(1024, max_partitions_total)``. A topic change past
  either, or one whose new partitions' fds would not fit in what is open now plus the
  reserve, gets ResourceLimitError naming the figures.
- fetch replies: ``max_bytes`` is clamped to ``MAX_FETCH_REPLY_BYTES`` (at least one whole
  batch is still returned, as always); a partition listed twice is refused.
- parked (long-poll) fetches: ``MAX_PARKED_PER_CLIENT`` per client (more: BrokerBusyError)
  and ``MAX_PARKED_PARTITIONS`` partition entries in all (more: answered at once with what
  there is, which a long-poll allows), so waking them stays cheap.
- unread reply bytes: fetch reply bytes handed to ZeroMQ and not yet written to the
  client's socket (``ReplyBacklog``, from ZeroMQ's message trackers). A client with
  ``MAX_UNREAD_REPLY_BYTES`` or more unread, or with any unread while all clients together
  hold ``MAX_UNREAD_REPLY_BYTES_TOTAL``, gets BrokerBusyError instead of more data: a small
  error reply, never silence (the ROUTER socket would drop replies past its HWM unseen).
"""

from __future__ import annotations

import collections
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BrokerBusyError, ResourceLimitError

if TYPE_CHECKING:
    import zmq

    from .logs import RateLimiter

logger = logging.getLogger("broker.server")

FDS_PER_SEGMENT = 3
SEGMENTS_BUDGETED_PER_PARTITION = 2
FD_RESERVE = 64  # the broker's own files, ZeroMQ's sockets and signalers, logs
MAX_PARTITIONS_PER_TOPIC = 1024  # TopicConfig's own ceiling
MAX_CLIENTS = 1024
MAX_FETCH_REPLY_BYTES = 64 * 1024 * 1024
MAX_PARKED_PER_CLIENT = 8
MAX_PARKED_PARTITIONS = 16_384
MAX_UNREAD_REPLY_BYTES = 64 * 1024 * 1024
MAX_UNREAD_REPLY_BYTES_TOTAL = 256 * 1024 * 1024


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0  # no /proc: the static limits still apply


@dataclass(frozen=True)
class BrokerLimits:
    fd_limit: int
    max_clients: int
    max_partitions_total: int
    max_partitions_per_topic: int

    @classmethod
    def from_fd_limit(cls, limit: int | None = None) -> BrokerLimits:
        limit = fd_limit() if limit is None else limit
        clients = max(1, min(MAX_CLIENTS, limit // 4))
        total = max(1, (limit - clients - FD_RESERVE) // (FDS_PER_SEGMENT * SEGMENTS_BUDGETED_PER_PARTITION))
        return cls(limit, clients, total, min(MAX_PARTITIONS_PER_TOPIC, total))

    def check_new_partitions(self, topic: str, topic_partitions: int, added: int, existing_total: int) -> None:
        """Raise ResourceLimitError if ``topic`` growing to ``topic_partitions`` (``added`` new
        ones) would pass a limit, given ``existing_total`` partitions in the broker."""
        if topic_partitions > self.max_partitions_per_topic:
            raise ResourceLimitError(
                f"topic {topic!r}: {topic_partitions} partitions exceed this broker's limit of "
                f"{self.max_partitions_per_topic} per topic (fd limit {self.fd_limit})")
        if existing_total + added > self.max_partitions_total:
            raise ResourceLimitError(
                f"topic {topic!r}: {added} more partitions would make {existing_total + added}, over this "
                f"broker's limit of {self.max_partitions_total} in total (fd limit {self.fd_limit}, "
                f"{FDS_PER_SEGMENT} fds per segment)")
        needed = open_fd_count() + added * FDS_PER_SEGMENT + FD_RESERVE
        if needed > self.fd_limit:
            raise ResourceLimitError(
                f"topic {topic!r}: {added} more partitions need {added * FDS_PER_SEGMENT} file descriptors; "
                f"{open_fd_count()} of {self.fd_limit} are open")

    def to_json(self) -> dict[str, int]:
        return {"fd_limit": self.fd_limit, "max_clients": self.max_clients,
                "max_partitions_total": self.max_partitions_total,
                "max_partitions_per_topic": self.max_partitions_per_topic,
                "max_fetch_reply_bytes": MAX_FETCH_REPLY_BYTES, "max_parked_per_client": MAX_PARKED_PER_CLIENT,
                "max_parked_partitions": MAX_PARKED_PARTITIONS, "max_unread_reply_bytes": MAX_UNREAD_REPLY_BYTES,
                "max_unread_reply_bytes_total": MAX_UNREAD_REPLY_BYTES_TOTAL}


@dataclass
class BrokerStats:
    """Counters of what the limits refused and of background trouble (the broker section of
    METADATA, so ``edge status`` and ``/metrics`` show them)."""

    fetch_max_bytes_clamped: int = 0
    fetch_parked_refused: int = 0  # BrokerBusyError: too many parked fetches of one client
    fetch_parked_overflow: int = 0  # answered at once: the broker's parked total was reached
    reply_backlog_refused: int = 0  # BrokerBusyError: too many unread reply bytes
    clients_refused: int = 0  # BrokerBusyError: too many clients
    partitions_refused: int = 0  # ResourceLimitError on a topic change
    accept_failures: int = 0  # connections the OS refused (EMFILE, ENFILE)
    disk_full_refusals: int = 0  # produce and commit requests refused with DiskFullError
    background_errors: dict[str, int] = field(default_factory=dict)  # timer task -> failures
    # fetch positions no longer in the log, by kind (offset_out_of_range, log_truncated)
    fetch_position_errors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


class ClientTable:
    """The most recently active clients (ROUTER identities), at most ``capacity``, and the
    number of live connections (from the socket monitor's accept/disconnect events)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.connections = 0
        self._recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def read_monitor(self, monitor: zmq.Socket[bytes], stats: BrokerStats, limiter: RateLimiter) -> None:
        """Apply the ROUTER monitor's pending events: connection count, refused accepts."""
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        from .logs import log_event_limited

        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_ACCEPTED:
                self.connections += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.connections = max(0, self.connections - 1)
            elif event == zmq.EVENT_ACCEPT_FAILED:
                stats.accept_failures += 1
                log_event_limited(limiter, logger, logging.ERROR, "accept_failed", connections=self.connections,
                                  effect="the client retries its connection")

    def reconcile(self) -> None:
        """Correct the connection count from the sockets the process holds (all but the
        listener are client connections): monitor events dropped in a burst cannot leave it
        wrong for longer than one call."""
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            return
        sockets = 0
        for fd in fds:
            try:
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                continue  # closed meanwhile
        self.connections = max(0, sockets - 1)

    def admit(self, identity: bytes) -> bool:
        """Record a request from ``identity``; False when it must be refused (too many clients)."""
        recent = self._recent
        if identity in recent:
            recent.move_to_end(identity)
            return True
        if self.connections > self.capacity and len(recent) >= self.capacity:
            return False
        recent[identity] = None
        if len(recent) > self.capacity:
            recent.popitem(last=False)
        return True


@dataclass
class _Untracked:
    """A client's reply bytes sent untracked since its last tracked reply."""

    nbytes: int = 0
    last_added: float = 0.0


class ReplyBacklog:
    """Fetch reply bytes given to ZeroMQ and not yet written to each client's socket.

    ZeroMQ writes one client's messages in order, so one tracked reply (its tracker is done
    once ZeroMQ has written it) vouches for every reply before it. Replies of
    ``TRACK_FROM_BYTES`` or more (already zero-copy) are each tracked; smaller ones are
    counted untracked until ``TRACK_FROM_BYTES`` of them have gathered, then the next one is
    tracked for them all: small fetches do not pay for a tracker each."""

    TRACK_FROM_BYTES = 64 * 1024  # zmq.COPY_THRESHOLD: larger replies are sent zero-copy anyway
    UNTRACKED_FORGET_S = 60.0  # untracked bytes of a client that stopped fetching: written or gone

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._pending: dict[bytes, collections.deque[tuple[zmq.MessageTracker, int]]] = {}
        self._untracked: dict[bytes, _Untracked] = {}
        self._clock = clock
        self.total = 0

    def wants_tracker(self, identity: bytes, nbytes: int) -> bool:
        untracked = self._untracked.get(identity)
        return nbytes + (untracked.nbytes if untracked else 0) >= self.TRACK_FROM_BYTES

    def add_untracked(self, identity: bytes, nbytes: int) -> None:
        entry = self._untracked.setdefault(identity, _Untracked())
        entry.nbytes += nbytes
        entry.last_added = self._clock()
        self.total += nbytes

    def add(self, identity: bytes, tracker: zmq.MessageTracker, nbytes: int) -> None:
        """A tracked reply of ``nbytes``; it vouches for the untracked ones sent before it."""
        folded = self._untracked.pop(identity, _Untracked()).nbytes
        self.total += nbytes
        if tracker.done:
            self.total -= nbytes + folded
            return
        self._pending.setdefault(identity, collections.deque()).append((tracker, nbytes + folded))

    def unread(self, identity: bytes) -> int:
        untracked = self._untracked.get(identity)
        unread = untracked.nbytes if untracked else 0
        pending = self._pending.get(identity)
        if not pending:
            return unread
        while pending and pending[0][0].done:  # ZeroMQ writes a client's replies in order
            self.total -= pending.popleft()[1]
        if not pending:
            del self._pending[identity]
            return unread
        return unread + sum(n for _, n in pending)

    def prune(self) -> None:
        for identity in list(self._pending):
            self.unread(identity)
        stale = self._clock() - self.UNTRACKED_FORGET_S
        for identity, entry in list(self._untracked.items()):
            if entry.last_added < stale:
                del self._untracked[identity]
                self.total -= entry.nbytes

    def check(self, identity: bytes) -> None:
        """Raise BrokerBusyError when ``identity`` may not be sent more fetch data now."""
        unread = self.unread(identity)
        if unread >= MAX_UNREAD_REPLY_BYTES or (unread and self.total >= MAX_UNREAD_REPLY_BYTES_TOTAL):
            raise BrokerBusyError(
                f"{unread} bytes of earlier fetch replies to this client are still unread "
                f"(limit {MAX_UNREAD_REPLY_BYTES} per client, {self.total} of {MAX_UNREAD_REPLY_BYTES_TOTAL} "
                "for all): read them, then fetch again")
