"""``python -m benchmarks.run [--quick]``: our broker against Apache Kafka and NATS, by the peers' own tools.

One command runs everything (``scripts/bench-run`` installs what it needs first):

1. **ceiling**: fio and dd on the filesystem the brokers write to (ceiling.py);
2. **kafka-tools**: Apache Kafka and our broker's Kafka listener started side by side; every
   case runs Kafka's ``kafka-producer-perf-test``, ``kafka-consumer-perf-test`` and
   ``kafka-e2e-latency`` against one, then the other (interleaved, repetition by
   repetition), with the same records and the same acks; 1 MB records written and durable,
   100-byte records, 1 KB end-to-end latency;
3. **clients**: librdkafka (confluent-kafka, tuned as Confluent's benchmark) against both,
   and our native client (broker/client over ipc) against ours (client_bench.py);
4. **curves**: producer throughput and p99 against record size, partitions and producers,
   for both (charts beside the JSON);
5. **nats**: ``nats bench`` (natscli) against nats-server JetStream, written and durable.

Every figure is the median of ``--repetitions`` (default 3) runs with min–max. The load
average before and after and the CPU time other processes took are recorded; a run is
called quiet only when both were low. A peer or tool that cannot run is skipped with the
reason (``skipped`` in the JSON); the JSON is rewritten after every section, so a partial
run leaves its figures. Output: ``benchmarks/results/run-<date>[-quick].json`` and
``…-curves.png``; the report (run_report.py) is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ceiling, client_bench, kafka_tools, perfparse, run_report
from .common import WORK_DIR
from .meter import BrokerMeter, MachineWatch
from .peers import EdgePeer, KafkaPeer, NatsPeer, Peer
from .systems import SystemUnavailable

MB = 1_000_000
MiB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("ceiling", "kafka-tools", "clients", "curves", "nats")


@dataclass
class Plan:
    """How much each case moves; ``--quick`` is a smoke of the same cases."""

    repetitions: int
    curve_repetitions: int
    ceiling_mib: int
    large_records: int  # 1 MB records per producer run
    small_records: int  # 100-byte records per producer run
    e2e_records: int
    curve_bytes: int  # bytes per curve point
    every_case: bool  # False (--quick): consumers of 1 MB written records only, no 100-byte client rows
    sizes: list[int] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    producers: list[int] = field(default_factory=list)


QUICK = Plan(3, 1, 128, 60, 100_000, 200, 20 * MB, False, [100, 1000, MiB], [1, 16], [1, 2])
FULL = Plan(3, 3, 2048, 1000, 2_000_000, 2000, 300 * MB, True, [100, 1000, 10_000, 100_000, MiB, 8 * MiB],
            [1, 4, 16, 64], [1, 2, 4, 8])


class Run:
    """The results document, filled section by section and written after each."""

    def __init__(self, plan: Plan, quick: bool, path: Path):
        self.plan, self.path = plan, path
        self.watch = MachineWatch()
        self.doc: dict[str, Any] = {
            "schema": perfparse.SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished": "",
            "complete": False, "quick": quick, "repetitions": plan.repetitions, "command": " ".join(sys.argv),
            "plan": plan.__dict__, "machine": {}, "skipped": [], "ceiling": {}, "rows": [], "resources": {},
            "peers": {}, "settings": {"kafka_tools_producer": kafka_tools.PRODUCER_PROPS,
                                      "rdkafka_throughput": client_bench.RDKAFKA_THROUGHPUT,
                                      "rdkafka_latency": client_bench.RDKAFKA_LATENCY},
            "ratios": []}
        self.update_machine()

    def update_machine(self) -> None:
        watched = self.watch.finish()
        quiet, note = perfparse.quiet_verdict(os.cpu_count() or 1, watched["load_before"], watched["foreign_cpu_s"],
                                              watched["wall_s"])
        self.doc["machine"] = {"cpus": os.cpu_count() or 1, **watched, "quiet": quiet, "quiet_note": note,
                               "filesystem": _filesystem(WORK_DIR)}

    def skip(self, what: str, reason: str) -> None:
        print(f"  skipped {what}: {reason}", flush=True)
        self.doc["skipped"].append({"what": what, "reason": reason})

    def add_row(self, section: str, system: str, client: str, case: dict[str, Any],
                runs: list[dict[str, float]]) -> None:
        if runs:
            self.doc["rows"].append({"section": section, "system": system, "client": client, "case": case,
                                     "metrics": perfparse.summarize_runs(runs)})

    def save(self, complete: bool = False) -> None:
        self.update_machine()
        self.doc["complete"] = complete
        self.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.doc["ratios"] = run_report.ratios(self.doc)
        perfparse.validate_run(self.doc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def _filesystem(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=False).stdout.splitlines()
    fields = out[-1].split() if len(out) > 1 else []
    return f"{fields[0]} {fields[1]} on {fields[-1]}" if len(fields) >= 7 else "unknown"


def _repeat(run: Run, what: str, repetitions: int, measure: Callable[..., dict[str, float]],
            *args: Any) -> list[dict[str, float]]:
    """The repetitions of one case, ``measure(*args)`` each; a failing one is recorded and ends the case."""
    results = []
    for _ in range(repetitions):
        try:
            results.append(measure(*args))
        except (kafka_tools.ToolRunError, perfparse.ToolOutputError, subprocess.SubprocessError, OSError) as exc:
            run.skip(what, str(exc)[:400])
            break
    return results


# -- kafka tools, clients, curves (both Kafka-protocol peers, interleaved) ----------------------

class KafkaSide:
    """The Kafka-protocol peers that started, with their meters and the jars of the tools."""

    def __init__(self, run: Run, base: Path, names: list[str]):
        self.run, self.peers, self.meters = run, [], {}
        self.libs: Path | None = None
        candidates: list[Peer] = [KafkaPeer(base / "kafka"), EdgePeer(base / "edge")]
        for peer in (p for p in candidates if p.name in names):
            print(f"starting {peer.name} ...", flush=True)
            try:
                peer.start()
            except SystemUnavailable as exc:
                run.skip(f"peer {peer.name}", str(exc))
                continue
            self.peers.append(peer)
            self.meters[peer.name] = BrokerMeter(peer.name, peer.pids())
            run.doc["peers"][peer.name] = peer.describe()
            if isinstance(peer, KafkaPeer):
                self.libs = peer.libs
        if self.libs is None and self.peers:
            try:
                from tests.kafka.harness import kafka_libs

                self.libs = kafka_libs()
            except Exception as exc:
                run.skip("Kafka perf tools", f"{type(exc).__name__}: {exc}"[:400])

    def topic(self, peer: Peer, name: str, partitions: int = 1, mode: str = "written") -> str:
        peer.create_topic(name, partitions, mode)
        return name

    def stop(self) -> None:
        for peer in self.peers:
            summary = self.meters[peer.name].close()
            self.run.doc["resources"][peer.name] = summary
            peer.stop()


def kafka_tools_section(run: Run, side: KafkaSide) -> None:
    if side.libs is None:
        return
    plan, libs, work = run.plan, side.libs, WORK_DIR
    cases = [("1MB", MB, plan.large_records, "written"), ("1MB", MB, plan.large_records, "durable"),
             ("100B", 100, plan.small_records, "written")]
    for label, size, records, mode in cases:
        topics = {peer.name: side.topic(peer, f"perf-{label}-{mode}", 1, mode) for peer in side.peers}
        produced: dict[str, list[dict[str, float]]] = {peer.name: [] for peer in side.peers}
        consumed: dict[str, list[dict[str, float]]] = {peer.name: [] for peer in side.peers}
        for rep in range(plan.repetitions):  # interleaved: kafka, edge, kafka, edge ...
            for peer in side.peers:
                print(f"  {peer.name}: producer-perf-test {label} {mode} rep {rep + 1}", flush=True)
                with side.meters[peer.name].case(records * size):
                    produced[peer.name] += _repeat(run, f"{peer.name} producer-perf-test {label} {mode}", 1,
                                                   kafka_tools.producer_perf, libs, peer.bootstrap, topics[peer.name],
                                                   records, size)
        for _ in range(plan.repetitions if plan.every_case or (mode, size) == ("written", MB) else 0):
            for peer in side.peers:
                with side.meters[peer.name].case(records * size):
                    consumed[peer.name] += _repeat(run, f"{peer.name} consumer-perf-test {label} {mode}", 1,
                                                   kafka_tools.consumer_perf, libs, work, peer.bootstrap,
                                                   topics[peer.name], records)
        for peer in side.peers:
            case = {"record_bytes": size, "records": records, "mode": mode, "partitions": 1, "acks": "all"}
            run.add_row("producer", peer.name, "kafka-producer-perf-test", case, produced[peer.name])
            run.add_row("consumer", peer.name, "kafka-consumer-perf-test", case, consumed[peer.name])
        run.save()
    latencies: dict[str, list[dict[str, float]]] = {peer.name: [] for peer in side.peers}
    topics = {peer.name: side.topic(peer, "e2e-1KB", 1, "written") for peer in side.peers}
    for rep in range(plan.repetitions):
        for peer in side.peers:
            print(f"  {peer.name}: e2e-latency rep {rep + 1}", flush=True)
            with side.meters[peer.name].case(2 * plan.e2e_records * 1024):
                latencies[peer.name] += _repeat(run, f"{peer.name} e2e-latency", 1, kafka_tools.e2e_latency,
                                                libs, peer.bootstrap, topics[peer.name], plan.e2e_records, 1024)
    for peer in side.peers:
        run.add_row("e2e", peer.name, "kafka-e2e-latency",
                    {"record_bytes": 1024, "records": plan.e2e_records, "mode": "written", "acks": "all"},
                    latencies[peer.name])
    run.save()


def _client(kind: str, action: str, target: str, topic: str, records: int, size: int,
            acks: str = "written") -> dict[str, float]:
    """One client_bench run in its own process."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.client_bench", kind, action, "--target", target, "--topic", topic,
         "--records", str(records), "--record-bytes", str(size), "--acks", acks],
        capture_output=True, text=True, timeout=kafka_tools.TOOL_TIMEOUT_S, check=False)
    return client_bench.parse_output(result.stdout + result.stderr)


def clients_section(run: Run, side: KafkaSide) -> None:
    plan = run.plan
    targets: list[tuple[Peer, str, str, list[str]]] = [(peer, "rdkafka", peer.bootstrap, ["written"])
                                                       for peer in side.peers]
    targets += [(peer, "native", peer.endpoint, ["written", "durable"])
                for peer in side.peers if isinstance(peer, EdgePeer)]
    for peer, kind, target, modes in targets:
        cases = [("1MB", MB, plan.large_records, mode) for mode in modes]
        if plan.every_case:
            cases.append(("100B", 100, plan.small_records, "written"))
        for label, size, records, mode in cases:
            topic = side.topic(peer, f"{kind}-{label}-{mode}", 1, mode)
            for action in ("produce", "consume"):
                print(f"  {peer.name}: {kind} {action} {label} {mode}", flush=True)
                # CPU per GB counts the cases every peer runs (the native client's are ours alone)
                metered = side.meters[peer.name].case(plan.repetitions * records * size) if kind == "rdkafka" \
                    else contextlib.nullcontext()
                with metered:
                    runs = _repeat(run, f"{peer.name} {kind} {action} {label} {mode}", plan.repetitions,
                                   _client, kind, action, target, topic, records, size, mode)
                run.add_row("producer" if action == "produce" else "consumer", peer.name, kind,
                            {"record_bytes": size, "records": records, "mode": mode, "partitions": 1}, runs)
        topic = side.topic(peer, f"{kind}-e2e", 1, "written")
        print(f"  {peer.name}: {kind} e2e", flush=True)
        runs = _repeat(run, f"{peer.name} {kind} e2e", plan.repetitions,
                       _client, kind, "e2e", target, topic, plan.e2e_records, 1024)
        run.add_row("e2e", peer.name, kind, {"record_bytes": 1024, "records": plan.e2e_records, "mode": "written"},
                    runs)
        run.save()


def _producers_perf(libs: Path, bootstrap: str, topic: str, records: int, size: int,
                    producers: int) -> dict[str, float]:
    """``producers`` producer-perf-test processes at once: rates summed, latencies the worst."""
    if producers == 1:
        return kafka_tools.producer_perf(libs, bootstrap, topic, records, size)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(producers) as pool:
        results = list(pool.map(lambda _: kafka_tools.producer_perf(libs, bootstrap, topic, records // producers, size),
                                range(producers)))
    return {"records_s": sum(r["records_s"] for r in results), "mb_s": sum(r["mb_s"] for r in results),
            "p50_ms": max(r["p50_ms"] for r in results), "p99_ms": max(r["p99_ms"] for r in results)}


def curves_section(run: Run, side: KafkaSide) -> None:
    if side.libs is None:
        return
    plan, libs = run.plan, side.libs
    # the 1 KB, 1 partition, 1 producer point is on all three axes: measured once
    points = [("record_bytes", size, size, 1, 1) for size in plan.sizes]
    shared = 1000 in plan.sizes
    points += [("partitions", parts, 1000, parts, 1) for parts in plan.partitions if parts != 1 or not shared]
    points += [("producers", count, 1000, 1, count) for count in plan.producers if count != 1 or not shared]
    for axis, x, size, partitions, producers in points:
        records = max(20, min(3_000_000, plan.curve_bytes // size))
        for peer in side.peers:
            topic = side.topic(peer, f"curve-{axis}-{x}", partitions, "written")
            print(f"  {peer.name}: curve {axis}={x}", flush=True)
            with side.meters[peer.name].case(plan.curve_repetitions * records * size):
                runs = _repeat(run, f"{peer.name} curve {axis}={x}", plan.curve_repetitions,
                               _producers_perf, libs, peer.bootstrap, topic, records, size, producers)
            case = {"axis": axis, "x": x, "record_bytes": size, "records": records, "partitions": partitions,
                    "producers": producers, "mode": "written"}
            run.add_row("curve", peer.name, "kafka-producer-perf-test", case, runs)
            if (size, partitions, producers) == (1000, 1, 1):
                for other in ("partitions", "producers"):
                    run.add_row("curve", peer.name, "kafka-producer-perf-test", {**case, "axis": other, "x": 1}, runs)
    run.save()


# -- NATS --------------------------------------------------------------------------------------

def natscli_binary() -> str | None:
    go_bin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "nats"
    return shutil.which("nats") or (str(go_bin) if go_bin.exists() else None)


def _nats_bench(binary: str, server: str, args: list[str]) -> dict[str, float]:
    result = subprocess.run([binary, "bench", *args, "--no-progress", "-s", server], capture_output=True, text=True,
                            timeout=kafka_tools.TOOL_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise perfparse.ToolOutputError(f"nats bench {' '.join(args[:3])} exited with {result.returncode}: "
                                        f"{(result.stdout + result.stderr)[-300:]}")
    return perfparse.parse_nats_bench(result.stdout + result.stderr)


def nats_section(run: Run, base: Path) -> None:
    binary = natscli_binary()
    if binary is None:
        run.skip("nats bench", "natscli not found: go install github.com/nats-io/natscli/nats@v0.5.0 "
                               "(scripts/bench-run does)")
        return
    plan = run.plan
    for mode in ("written", "durable"):
        peer = NatsPeer(base / f"nats-{mode}", mode)
        try:
            peer.start()
        except SystemUnavailable as exc:
            run.skip(f"peer nats ({mode})", str(exc))
            continue
        meter = BrokerMeter(f"nats-{mode}", peer.pids())
        run.doc["peers"][f"nats-{mode}"] = peer.describe()
        try:
            cases = [("1MB", MB, plan.large_records)]
            if mode == "written" or plan.every_case:  # sync_interval: always syncs each write: 1/100
                cases.append(("100B", 100, plan.small_records if mode == "written" else plan.small_records // 100))
            for label, size, records in cases:
                stream = f"bench{label}"
                common = ["--msgs", str(records), "--size", str(size), "--stream", stream]
                # the stream holds every repetition; JetStream refuses a limit above its file store
                limit_mb = max(1024, 2 * plan.repetitions * records * size // MB)
                print(f"  nats {mode}: bench js pub async / ordered {label}", flush=True)
                with meter.case(2 * plan.repetitions * records * size):
                    pubs = _repeat(run, f"nats {mode} js pub async {label}", plan.repetitions, _nats_bench,
                                   binary, peer.bootstrap, ["js", "pub", "async", f"bench.{label}", *common, "--create",
                                                            "--storage", "file", "--maxbytes", f"{limit_mb}MB"])
                    subs = _repeat(run, f"nats {mode} js ordered {label}", plan.repetitions, _nats_bench,
                                   binary, peer.bootstrap, ["js", "ordered", *common])
                for runs in (pubs, subs):
                    for figures in runs:  # natscli rounds MiB/s: MB/s from msgs/s and the size
                        figures["mb_s"] = figures["records_s"] * size / 1e6
                case = {"record_bytes": size, "records": records, "mode": mode, "partitions": 1}
                run.add_row("producer", "nats", "nats bench js pub async", case, pubs)
                run.add_row("consumer", "nats", "nats bench js ordered", case, subs)
            print(f"  nats {mode}: bench js pub sync 1KB (publish-ack latency)", flush=True)
            syncs = _repeat(run, f"nats {mode} js pub sync", plan.repetitions, _nats_bench,
                            binary, peer.bootstrap, ["js", "pub", "sync", "bench.sync", "--msgs", str(plan.e2e_records),
                                                     "--size", "1024", "--stream", "benchsync", "--create", "--storage",
                                                     "file"])
            run.add_row("publish-ack", "nats", "nats bench js pub sync",
                        {"record_bytes": 1024, "records": plan.e2e_records, "mode": mode}, syncs)
        finally:
            run.doc["resources"][f"nats-{mode}"] = meter.close()
            peer.stop()
        run.save()


def _ceiling_section(run: Run, base: Path) -> None:
    run.doc["ceiling"] = ceiling.measure(base / "disk", run.plan.ceiling_mib, run.plan.repetitions, run.doc["skipped"])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _guarded(run: Run, name: str, section: Callable[..., None], *args: Any) -> None:
    """A section that fails is recorded with its reason and the run goes on to the next."""
    try:
        section(*args)
    except Exception as exc:
        run.skip(f"section {name}", f"{type(exc).__name__}: {exc}"[:400])
    run.save()


# -- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke of every case (a few minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--peers", default="kafka,edge", help="Kafka-protocol peers to run (kafka, edge)")
    parser.add_argument("--repetitions", type=int, help="repetitions per figure (default 3; at least 3 to quote)")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/run-<date>[-quick].json)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if set(peers) - {"kafka", "edge"}:
        parser.error(f"unknown peers: {', '.join(sorted(set(peers) - {'kafka', 'edge'}))} (known: kafka, edge)")
    plan = QUICK if args.quick else FULL
    if args.repetitions is not None:
        if args.repetitions < 1:
            parser.error("--repetitions must be >= 1")
        plan.repetitions = args.repetitions
    suffix = "-quick" if args.quick else ""
    path = args.output or RESULTS / f"run-{time.strftime('%Y-%m-%d')}{suffix}.json"
    run = Run(plan, args.quick, path)
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)  # killed: still stops its brokers, writes its JSON
    base = WORK_DIR / "run"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    print(f"benchmarks.run: {', '.join(sections)} -> {path}; load average {run.watch.load_before}", flush=True)
    try:
        if "ceiling" in sections:
            print("ceiling: fio and dd ...", flush=True)
            _guarded(run, "ceiling", _ceiling_section, run, base)
        if {"kafka-tools", "clients", "curves"} & set(sections):
            side = KafkaSide(run, base, peers)
            try:
                for name, section in (("kafka-tools", kafka_tools_section), ("clients", clients_section),
                                      ("curves", curves_section)):
                    if name in sections and side.peers:
                        print(f"{name} ...", flush=True)
                        _guarded(run, name, section, run, side)
            finally:
                side.stop()
        if "nats" in sections:
            print("nats ...", flush=True)
            _guarded(run, "nats", nats_section, run, base)
    except KeyboardInterrupt:
        run.skip("run", "interrupted")
    finally:
        run.save(complete=not any(s["what"] == "run" for s in run.doc["skipped"]))
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_handler)
    charts = run_report.charts(run.doc, path.with_name(path.stem + "-curves.png"))
    print(run_report.render(run.doc, charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
