"""The broker's limits without a broker: fd-derived budgets, the client table, the reply backlog."""

from __future__ import annotations

import pytest

from broker.errors import BrokerBusyError, ResourceLimitError
from broker.limits import MAX_UNREAD_REPLY_BYTES, BrokerLimits, ClientTable, ReplyBacklog


class Tracker:
    def __init__(self):
        self.done = False


def test_limits_follow_the_fd_limit():
    vehicle = BrokerLimits.from_fd_limit(65536)
    assert vehicle.max_clients == 1024 and vehicle.max_partitions_per_topic == 1024
    assert vehicle.max_partitions_total == (65536 - 1024 - 64) // 6
    small = BrokerLimits.from_fd_limit(512)
    assert (small.max_clients, small.max_partitions_total) == (128, 53)
    with pytest.raises(ResourceLimitError, match="per topic"):
        small.check_new_partitions("t", 54, 54, 0)
    with pytest.raises(ResourceLimitError, match="in total"):
        small.check_new_partitions("t", 10, 10, 50)
    small.check_new_partitions("t", 10, 10, 40)


def test_client_table_refuses_new_clients_only_past_the_cap():
    table = ClientTable(2)
    assert table.admit(b"a") and table.admit(b"b")
    table.connections = 3
    assert not table.admit(b"c")  # over the cap and the table is full: refused
    assert table.admit(b"a")  # known clients go on
    table.connections = 2
    assert table.admit(b"c")  # below the cap again: admitted, the least recent forgotten


def test_reply_backlog_tracks_large_replies_and_groups_small_ones():
    now = [0.0]
    backlog = ReplyBacklog(clock=lambda: now[0])
    big = Tracker()
    assert backlog.wants_tracker(b"x", MAX_UNREAD_REPLY_BYTES)
    backlog.add(b"x", big, MAX_UNREAD_REPLY_BYTES)
    with pytest.raises(BrokerBusyError, match="unread"):
        backlog.check(b"x")
    backlog.check(b"y")  # another client is not held back by x alone
    big.done = True
    backlog.check(b"x")
    assert backlog.total == 0
    for _ in range(10):  # small replies: counted, not tracked one by one
        assert not backlog.wants_tracker(b"x", 1000)
        backlog.add_untracked(b"x", 1000)
    assert backlog.unread(b"x") == 10_000
    assert backlog.wants_tracker(b"x", 60_000)  # the one that vouches for them
    small = Tracker()
    backlog.add(b"x", small, 60_000)
    assert backlog.unread(b"x") == 70_000
    small.done = True
    assert backlog.unread(b"x") == 0 and backlog.total == 0
    backlog.add_untracked(b"z", 500)
    now[0] = 61.0
    backlog.prune()  # a client that stopped fetching is forgotten
    assert backlog.total == 0
