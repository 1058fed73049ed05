"""Group coordinator: assignment, rebalance on join/leave/expiry, durable offsets."""

from __future__ import annotations

import pytest

from broker.errors import InvalidRequestError, UnknownGroupMemberError
from broker.groups import GroupCoordinator


def coordinator(tmp_path, parts=None):
    parts = parts or {"a": 4, "b": 2}
    return GroupCoordinator(tmp_path, lambda t: parts.get(t, 0))


def test_partitions_are_dealt_among_members(tmp_path):
    c = coordinator(tmp_path)
    m1, gen1, a1 = c.join("g", None, ["a", "b"], 10)
    assert sorted(a1) == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1)]
    m2, gen2, _ = c.join("g", None, ["a", "b"], 10)
    assert gen2 == gen1 + 1
    rebalance, gen, a1 = c.heartbeat("g", m1, gen1)
    assert rebalance and gen == gen2
    # hand-over: m1 still reads what it gave up until its next request (after its commit)
    assert c.heartbeat("g", m2, gen2) == (False, gen2, [])
    assert c.heartbeat("g", m1, gen2) == (False, gen2, a1)
    rebalance, _, a2 = c.heartbeat("g", m2, gen2)
    assert rebalance
    assert sorted(a1 + a2) == sorted([("a", i) for i in range(4)] + [("b", 0), ("b", 1)])
    assert not set(a1) & set(a2) and len(a1) == len(a2) == 3


def test_expired_member_partitions_move(tmp_path):
    c = coordinator(tmp_path)
    m1, _, _ = c.join("g", None, ["a"], 1.0)
    m2, gen, _ = c.join("g", None, ["a"], 100.0)
    c.groups["g"].members[m1].last_seen -= 5
    c.expire()
    rebalance, _, a2 = c.heartbeat("g", m2, gen)
    assert rebalance and sorted(a2) == [("a", i) for i in range(4)]
    with pytest.raises(UnknownGroupMemberError):
        c.heartbeat("g", m1, gen)


def test_offsets_survive_reopen_and_bad_file_is_reported(tmp_path, caplog):
    c = coordinator(tmp_path)
    c.commit("g", {("a", 1): 42})
    c.commit("mirror", {("b", 0): 7})
    again = coordinator(tmp_path)
    assert again.fetch("g") == {("a", 1): 42}
    (tmp_path / "_groups" / "g.json").write_text("{broken")
    third = coordinator(tmp_path)
    assert third.fetch("g") == {} and third.fetch("mirror") == {("b", 0): 7}
    assert "group_offsets_unreadable" in caplog.text


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".", 3])
def test_bad_group_names(tmp_path, name):
    with pytest.raises(InvalidRequestError):
        coordinator(tmp_path).commit(name, {})
