"""Packet loss and reordering counted per stream (loss.py), on the real captures with
packets removed and swapped here: exact counts for Velodyne (timestamps) and Ouster
(frame and measurement ids), in one batch, across batches and from live UDP."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from drivers.lidar.frame import LidarTimeoutError
from drivers.lidar.loss import PacketLoss
from drivers.lidar.ouster import OusterDecoder
from drivers.lidar.pcap import iter_udp_packets, read_udp_payloads
from drivers.lidar.sources import UdpSource
from drivers.lidar.velodyne import VelodyneDecoder

from .builders import CALIBRATION, CAPTURE, send_when_bound
from .captures import HDL32E, HDL32E_CALIBRATION, HDL32E_CAPTURE, OUSTER_LEGACY, needs


def _damaged_order(count: int, dropped: list[int], swapped: list[int]) -> np.ndarray:
    """Packet indices with ``dropped`` removed and each of ``swapped`` exchanged with its successor."""
    order = [i for i in range(count) if i not in dropped]
    for index in swapped:
        at = order.index(index)
        order[at], order[at + 1] = order[at + 1], order[at]
    return np.asarray(order)


@pytest.mark.parametrize("batch", [2048, 7], ids=["one-batch", "batches-of-7"])
def test_velodyne_loss_and_reordering_are_counted(shared_data, batch):
    packets = read_udp_payloads(shared_data / CAPTURE)
    order = _damaged_order(len(packets), dropped=[100, 500, 501, 502, 1500], swapped=[800, 1200])
    decoder = VelodyneDecoder(shared_data / CALIBRATION)
    for begin in range(0, order.shape[0], batch):
        chosen = order[begin:begin + batch]
        decoder.decode(packets.payloads[chosen], packets.timestamps_ns[chosen])
    assert decoder.loss.as_dict() == {"received": len(packets) - 5, "lost": 5, "out_of_order": 2}


@HDL32E
def test_an_intact_capture_has_no_loss(shared_data):
    for capture, calibration in ((shared_data / CAPTURE, shared_data / CALIBRATION),
                                 (HDL32E_CAPTURE, HDL32E_CALIBRATION)):
        packets = read_udp_payloads(capture)
        decoder = VelodyneDecoder(calibration)
        decoder.decode(packets.payloads, packets.timestamps_ns)
        assert decoder.loss.as_dict() == {"received": len(packets), "lost": 0, "out_of_order": 0}


@needs(OUSTER_LEGACY)
def test_ouster_loss_and_reordering_are_counted():
    base = OUSTER_LEGACY
    decoder = OusterDecoder(f"{base}.json")
    packets = read_udp_payloads(f"{base}.pcap", port=decoder.port, payload_size=decoder.packet_size)
    order = _damaged_order(len(packets), dropped=[3, 40, 41], swapped=[20])
    decoder.decode(packets.payloads[order], packets.timestamps_ns[order])
    assert decoder.loss.as_dict() == {"received": 61, "lost": 3, "out_of_order": 1}


def test_loss_counter_wraps_and_duplicates():
    loss = PacketLoss(wrap=1000)
    loss.update(np.array([980, 990, 0, 10, 10, 40]), slot=10)  # wraps after 990; 10 twice; 20, 30 missing
    assert loss.as_dict() == {"received": 6, "lost": 1, "out_of_order": 1}  # the duplicate fills no gap: 2 - 1


def test_live_udp_counts_reach_the_source(shared_data):
    payloads = [bytes(p.payload) for p in iter_udp_packets(shared_data / CAPTURE, ports=[2368])][:400]
    order = _damaged_order(len(payloads), dropped=[50, 51, 300], swapped=[200])
    source = UdpSource("127.0.0.1", 0, shared_data / CALIBRATION, timeout_s=0.5)

    sender = threading.Thread(target=send_when_bound, args=(source, [payloads[i] for i in order], 0.0002))
    sender.start()
    with pytest.raises(LidarTimeoutError):
        for _ in source:
            pass
    sender.join()
    assert source.packet_counts == {"received": 397, "lost": 3, "out_of_order": 1, "skipped": {}}


def test_edge_status_shows_the_model_and_the_packet_counts():
    from edge.status import format_status

    details = {"lidar_model": {"model": "HDL-32E", "decided_by": "packets: firing_pattern+packet_interval"},
               "lidar_packets": {"received": 397, "lost": 3, "out_of_order": 1, "skipped": {"wrong_size": 2}}}
    status = {"disk": {"data_bytes": 0, "free_bytes": 1, "total_bytes": 2, "write_bytes_per_s": 0,
                       "retention_horizon_h": None},
              "topics": {}, "groups": {}, "mirror": None,
              "drivers": {"roof": {"state": "running", "rate_hz": 10.0, "captured": 5, "published": 5, "dropped": {},
                                   "details": details}}}
    text = format_status(status)
    assert "  model HDL-32E (packets: firing_pattern+packet_interval)" in text
    assert "  packets 397 received, 3 lost, 1 out of order, 2 skipped" in text


def test_metrics_export_the_packet_counts():
    from edge.api.metrics import build_registry, render

    health = {"kind": "lidar", "topic": "lidar.roof", "state": "running",
              "details": {"lidar_packets": {"received": 397, "lost": 3, "out_of_order": 1,
                                            "skipped": {"wrong_size": 2}}}}
    text = render(build_registry(lambda: {"drivers": {"roof": health}})).decode()
    for outcome, value in (("received", 397), ("lost", 3), ("out_of_order", 1), ("skipped", 2)):
        assert (f'edge_lidar_packets_total{{kind="lidar",outcome="{outcome}",sensor="roof",topic="lidar.roof"}} '
                f'{float(value)}') in text
