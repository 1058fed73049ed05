"""The pure parts of ``python -m benchmarks.run``: the peers' tool outputs, spread, quiet, schema, ratios.

Outputs are verbatim from the tool versions the run uses (Kafka 4.1.1's perf tools, natscli
0.5.0, fio 3.33, GNU dd); nothing here starts a process.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks import perfparse, run_report
from benchmarks.client_bench import parse_output

PRODUCER = """\
SLF4J: Defaulting to no-operation (NOP) logger implementation
20000 records sent, 10005.0 records/sec (9.54 MB/sec), 620.14 ms avg latency, 965.00 ms max latency.
20000 records sent, 10005.0 records/sec (9.54 MB/sec), 620.14 ms avg latency, 965.00 ms max latency, \
666 ms 50th, 950 ms 95th, 962 ms 99th, 964 ms 99.9th.
"""
CONSUMER = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, \
fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-06 05:51:23:794, 2026-12-06 05:51:24:334, 19.0735, 35.3213, 20000, 37037.0370, 358, 182, 104.7994, 109890.1099
"""
E2E = """\
Topic "e2e" does not exist. Will create topic with 1 partition(s) and replication factor = 1
0\t92.293727
Avg latency: 4.8048 ms
Percentiles: 50th = 3, 99th = 16, 99.9th = 92
"""
NATS_PUB = ("NATS JetStream asynchronous publisher stats: 38,297 msgs/sec ~ 37 MiB/sec ~ min: 3,334.15us ~ "
            "avg: 13,050.56us ~ max: 115,124.81us ~ P50: 7,442.70us ~ P90: 31,876.09us ~ P99: 67,004.36us ~ "
            "P99.9: 115,124.81us\n")
FIO = ('note: both iodepth >= 1 and synchronous I/O engine are selected\n{"fio version": "fio-3.33", "jobs": [{'
       '"jobname": "w", "read": {"io_bytes": 0, "bw_bytes": 0}, "write": {"io_bytes": 134217728, '
       '"bw_bytes": 335544320}}]}')
DD = "2048+0 records in\n2048+0 records out\n2147483648 bytes (2.1 GB, 2.0 GiB) copied, 2.5 s, 859 MB/s\n"


def test_kafka_tool_outputs_are_read_as_the_tools_print_them() -> None:
    producer = perfparse.parse_producer_perf(PRODUCER)
    assert producer["records_s"] == 10005.0 and producer["p99_ms"] == 962 and producer["p999_ms"] == 964
    assert producer["mb_s"] == pytest.approx(9.54 * 1024 * 1024 / 1e6)  # the tool's MB is 2^20 bytes
    consumer = perfparse.parse_consumer_perf(CONSUMER)
    assert consumer["records"] == 20000 and consumer["rebalance_ms"] == 358
    assert consumer["fetch_mb_s"] == pytest.approx(104.7994 * 1.048576)
    assert perfparse.parse_e2e_latency(E2E) == {"avg_ms": 4.8048, "p50_ms": 3, "p99_ms": 16, "p999_ms": 92}
    for parse, text in ((perfparse.parse_producer_perf, "Exception in thread main"),
                        (perfparse.parse_consumer_perf, "start.time, end.time\n1, 2"),
                        (perfparse.parse_e2e_latency, "Avg latency: 3 ms")):
        with pytest.raises(perfparse.ToolOutputError):
            parse(text)


def test_nats_fio_dd_and_client_outputs() -> None:
    nats = perfparse.parse_nats_bench(NATS_PUB)
    assert nats["records_s"] == 38297 and nats["p99_ms"] == pytest.approx(67.00436)
    assert nats["p999_ms"] == pytest.approx(115.12481) and nats["p50_ms"] == pytest.approx(7.4427)
    assert perfparse.parse_nats_bench("ordered ephemeral consumer stats: 94,593 msgs/sec ~ 92 MiB/sec")["mb_s"] \
        == pytest.approx(92 * 1.048576)
    assert perfparse.parse_fio_json(FIO)["mb_s"] == pytest.approx(335.54432)
    assert perfparse.parse_dd(DD)["mb_s"] == pytest.approx(2147483648 / 2.5 / 1e6)
    assert parse_output('warning\n{"records_s": 5, "mb_s": 1.5}\n') == {"records_s": 5.0, "mb_s": 1.5}
    with pytest.raises(perfparse.ToolOutputError, match="TimeoutError: record 3"):
        parse_output('{"error": "TimeoutError: record 3 not consumed within 10 s"}')


def test_spread_is_median_with_min_and_max() -> None:
    summary = perfparse.summarize([30.0, 10.0, 20.0, 100.0])
    assert (summary["median"], summary["min"], summary["max"], summary["n"]) == (25.0, 10.0, 100.0, 4)
    runs = perfparse.summarize_runs([{"mb_s": 3.0, "p99_ms": 9.0}, {"mb_s": 1.0}, {"mb_s": 2.0}])
    assert runs["mb_s"]["median"] == 2.0 and runs["p99_ms"]["n"] == 1
    assert perfparse.spread_text(runs["mb_s"]) == "2.0 (1.0–3.0)"
    with pytest.raises(ValueError):
        perfparse.summarize([])


def test_a_run_on_a_shared_machine_is_never_called_quiet() -> None:
    assert perfparse.quiet_verdict(2, [0.2, 0.3, 0.1], foreign_cpu_s=5.0, wall_s=100.0) == (True, "quiet")
    quiet, note = perfparse.quiet_verdict(2, [6.8, 4.9, 2.7], foreign_cpu_s=5.0, wall_s=100.0)
    assert not quiet and "noisy, machine shared" in note and "6.80" in note
    quiet, note = perfparse.quiet_verdict(2, [0.1, 0.1, 0.1], foreign_cpu_s=60.0, wall_s=100.0)
    assert not quiet and "30%" in note


def _row(system: str, values: list[float]) -> dict[str, Any]:
    return {"section": "producer", "system": system, "client": "kafka-producer-perf-test",
            "case": {"record_bytes": 1_000_000, "mode": "written"}, "metrics": {"mb_s": perfparse.summarize(values)}}


def _doc() -> dict[str, Any]:
    return {"schema": perfparse.SCHEMA, "started": "s", "finished": "f", "quick": True, "repetitions": 3,
            "machine": {"cpus": 2, "load_before": [0.1, 0.1, 0.1], "load_after": [1.0, 1.0, 1.0], "quiet": True,
                        "quiet_note": "quiet"},
            "skipped": [{"what": "peer nats (written)", "reason": "no nats-server"}],
            "ceiling": {"fio_write_buffered": perfparse.summarize([1000.0, 1200.0, 800.0])},
            "rows": [_row("edge", [300.0, 310.0, 290.0]), _row("kafka", [200.0, 190.0, 210.0])],
            "resources": {name: {"peak_rss_mb": rss, "cpu_s": 2.0, "gb_moved": 1.0, "cpu_s_per_gb": 2.0}
                          for name, rss in (("edge", 80.0), ("kafka", 1000.0))}, "ratios": []}


def test_schema_accepts_a_run_and_names_what_is_wrong() -> None:
    doc = _doc()
    perfparse.validate_run(doc)
    broken = copy.deepcopy(doc)
    del broken["machine"]["quiet"]
    broken["rows"][0]["metrics"]["mb_s"]["min"] = 999.0
    broken["skipped"].append({"what": "x"})
    del broken["resources"]["kafka"]["cpu_s_per_gb"]
    with pytest.raises(perfparse.SchemaError) as error:
        perfparse.validate_run(broken)
    message = str(error.value)
    assert "run.machine.quiet missing" in message and "run.rows[0].metrics.mb_s" in message
    assert "run.skipped[1].reason missing" in message and "run.resources.kafka.cpu_s_per_gb missing" in message


def test_ratios_and_ceiling_shares_come_from_the_medians() -> None:
    doc = _doc()
    goals = {goal["what"]: goal for goal in run_report.ratios(doc)}
    written = goals["1 MB producer MB/s, edge/kafka (written, producer-perf-test both)"]
    assert written["ratio"] == 1.5 and written["met"] is True
    assert goals["broker peak RSS MB, edge/kafka"]["ratio"] == 0.08
    assert goals["e2e p99 ms, edge/kafka (kafka-e2e-latency both, 1 KB)"]["met"] is None  # not measured: n/a
    shares = {label.split()[0]: share for label, _, _, share in run_report.ceiling_shares(doc)}
    assert shares == {"edge": 0.3, "kafka": 0.2}
    text = run_report.render({**doc, "complete": False, "peers": {}, "ratios": list(goals.values())}, "charts: none")
    assert "SKIPPED peer nats (written): no nats-server" in text and "(PARTIAL)" in text


def test_a_peer_that_cannot_start_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """Port taken: the broker's own error line is the reason; nothing is left running."""
    import socket

    from benchmarks.peers import EdgePeer
    from benchmarks.systems import SystemUnavailable

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        peer = EdgePeer(tmp_path / "edge", port=taken.getsockname()[1])
        with pytest.raises(SystemUnavailable, match="Address already in use"):
            peer.start()
    assert peer.process is not None and peer.process.poll() is not None


def test_a_run_missing_a_tool_still_writes_its_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from benchmarks import run

    monkeypatch.setattr(run, "WORK_DIR", tmp_path / "work")
    monkeypatch.setattr(run, "natscli_binary", lambda: None)
    output = tmp_path / "out.json"
    assert run.main(["--quick", "--sections", "nats", "--output", str(output)]) == 0
    doc = json.loads(output.read_text())
    perfparse.validate_run(doc)
    assert doc["complete"] is True and doc["rows"] == []
    assert [skip["what"] for skip in doc["skipped"]] == ["nats bench"]
    assert "natscli not found" in capsys.readouterr().out
