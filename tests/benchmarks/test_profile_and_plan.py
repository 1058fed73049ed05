"""The benchmark harness's pure parts: the plan of phases and the profile summary."""

from __future__ import annotations

import pytest

from benchmarks.profile import summarise
from benchmarks.workloads import WORKLOADS, build_plan


def test_quick_plan_is_short_and_keeps_one_durable_phase():
    quick, full = build_plan(list(WORKLOADS), True), build_plan(list(WORKLOADS), False)
    assert quick.modes() == ["written", "durable"] and full.modes() == ["written", "durable"]
    assert [p.key for p in quick.phases if p.mode == "durable"] == ["telemetry/2000/s x 50-2000B/durable"]
    assert len([p for p in full.phases if p.mode == "durable"]) == 4  # camera, raw max, lidar, telemetry
    quick_seconds = sum(p.duration_s for p in quick.phases)
    assert quick_seconds < sum(p.duration_s for p in full.phases) / 3
    replay = [p for p in quick.phases if p.replay_bytes]
    assert [p.replay_bytes for p in replay] == [512 * 1024 * 1024]
    with pytest.raises(ValueError, match="unknown workloads: nope"):
        build_plan(["camera", "nope"], True)


def test_profile_summary_attributes_samples_to_roles_and_skips_sleepers():
    raw = [
        'process 10:"python -m broker.server";<module> (broker/server.py:579);'
        'Segment.append (broker/storage/segment.py:99) 30',
        'process 10:"python -m broker.server";<module> (broker/server.py:579);Poller.poll (zmq/sugar/poll.py:106) 50',
        'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(pipe_handle=2)";'
        '<module> (benchmarks/harness.py:38) 5',
        'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(pipe_handle=2)";'
        'producer_main (benchmarks/harness.py:106);encode_batch (broker/records.py:332) 15',
        'garbage line',
    ]
    summary = summarise(raw)
    assert set(summary) == {"broker", "producer"}
    assert summary["broker"]["samples"] == 80 and summary["broker"]["share_pct"] == 80.0
    assert summary["broker"]["top_self"] == [["Segment.append (broker/storage/segment.py:99)", 30]]
    assert summary["producer"]["processes"] == 1
    assert summary["producer"]["top_self"][0] == ["encode_batch (broker/records.py:332)", 15]
