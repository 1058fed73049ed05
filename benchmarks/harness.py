"""Runs the workload phases on each system with producer and consumer processes, and measures them.

    python -m benchmarks [--quick] [--workloads camera,...] [--systems edge,kafka,nats,disk]

Per system the broker is started once in a fresh directory on the same filesystem as the
``dd`` ceiling (once per durability mode for NATS, where the mode is the server's setting;
edge and Kafka set it per topic), every phase runs against it, then it is stopped. Per phase:

- one consumer process assigns every partition of the phase's topics from offset 0 and
  signals ready; then one producer process per stream group starts (multiprocessing spawn);
- every record begins with a 16-byte stamp (magic, stream id, ``time.time_ns()`` at send),
  so the consumer measures produce→consume latency on the machine's one clock (all records
  when they arrive a few per poll, the first and last of larger polls);
- throughput = bytes and records consumed / (first producer start → last record consumed);
  the replay phase times the read alone (consumer start → last record);
- produce rate = bytes and records sent / (producer start → its flush returned), also kept;
- drops = frames a paced producer skipped (slot missed by more than one period and 20 ms) + records the broker
  refused + records sent but never consumed (the consumer drains until it has them all or
  nothing arrives for ``QUIET_S``);
- broker RSS (peak) and CPU (% of one core over the phase) sampled with psutil every 0.25 s
  on the broker's process ids (for Kafka, the JVM).
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing as mp
import os
import queue
import struct
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil

from . import report
from .common import WORK_DIR
from .systems import ALL_SYSTEMS, BROKER_SYSTEMS, SystemUnavailable, consumer_client, producer_client, system_module
from .systems import disk as disk_system
from .workloads import WORKLOADS, Phase, Stream, build_plan, camera_streams

STAMP = struct.Struct("<4sIq")  # magic, stream id, send time (ns since the epoch)
MAGIC = b"BNCH"
QUIET_S = 3.0
MAX_DRAIN_S = 60.0
LATE_TOLERANCE_S = 0.020  # a slot missed by more than this (or one period, if longer) is a drop
SMALL_RECORD_BYTES = 1024  # at maximum rate, records up to this size go through send_many
CHUNK_RECORDS = 5000
LATENCY_SAMPLES_KEPT = 20_000
WARMUP = Phase("warmup", "camera-like, not measured", "written",
               [Stream("warmup", s.partition, s.size, s.rate_hz, s.producer) for s in camera_streams()], 2.0)


# -- child processes ---------------------------------------------------------------------

def _payload_source(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=8 * 1024 * 1024, dtype=np.uint8).tobytes()


def _record(pool: bytes, stream_id: int, size: int, offset: int) -> bytes:
    body = size - STAMP.size
    start = offset % (len(pool) - body) if body < len(pool) else 0
    return STAMP.pack(MAGIC, stream_id, time.time_ns()) + pool[start:start + body]


def _sizes(stream: Stream, rng: np.random.Generator):
    if isinstance(stream.size, int):
        while True:
            yield stream.size
    low, high = stream.size
    while True:
        yield from rng.integers(low, high + 1, size=4096).tolist()


def producer_main(system: str, connection: dict, streams: list[Stream], stream_ids: list[int], duration_s: float,
                  replay_bytes: int, max_records: int, ready: mp.Queue, go, results: mp.Queue) -> None:
    """Sends the streams (paced, or at maximum rate) for ``duration_s`` (at most ``max_records``
    at maximum rate, 0: no cap) once ``go`` is set; reports what it did."""
    announced = False
    try:
        client = producer_client(system, connection)
        pool = _payload_source(stream_ids[0])
        rng = np.random.default_rng(stream_ids[0])
        sizes = [_sizes(s, rng) for s in streams]
        sent = skipped = bytes_sent = 0
        ready.put(True)  # imported, connected, payloads made: the clock starts for all at once
        announced = True
        if not go.wait(120):
            raise RuntimeError("no start signal from the harness")
        started = time.time()
        end = time.perf_counter() + duration_s
        if replay_bytes:
            stream = streams[0]
            while bytes_sent < replay_bytes:
                client.send(stream.topic, stream.partition, _record(pool, stream_ids[0], stream.size, sent * 4099))
                sent += 1
                bytes_sent += stream.size
        elif all(s.rate_hz is None for s in streams):
            sent, bytes_sent = _max_rate(client, pool, streams, stream_ids, sizes, end, max_records)
        else:
            sent, skipped, bytes_sent = _paced(client, pool, streams, stream_ids, sizes, end)
        client.flush(120)
        finished = time.time()
        errors = client.errors
        client.close()
        results.put({"sent": sent, "skipped": skipped, "errors": errors, "bytes_sent": bytes_sent,
                     "started": started, "finished": finished})
    except Exception:  # reported to the harness, which shows it
        results.put({"error": traceback.format_exc()})
        if not announced:
            ready.put(False)  # the harness need not wait for this one


def _max_rate(client, pool, streams, stream_ids, sizes, end, max_records: int) -> tuple[int, int]:
    sent = bytes_sent = i = 0
    while time.perf_counter() < end and not (max_records and sent >= max_records):
        k = i % len(streams)
        stream, sid = streams[k], stream_ids[k]
        i += 1
        size = next(sizes[k])
        if size <= SMALL_RECORD_BYTES:
            # one stamped record at each end of the chunk; the rest are plain copies
            body = pool[:size]
            values = [body] * CHUNK_RECORDS
            values[0] = _record(pool, sid, size, 0)
            values[-1] = _record(pool, sid, size, 7)
            client.send_many(stream.topic, stream.partition, values)
            sent += CHUNK_RECORDS
            bytes_sent += size * CHUNK_RECORDS
        else:
            client.send(stream.topic, stream.partition, _record(pool, sid, size, sent * 4099))
            sent += 1
            bytes_sent += size
    return sent, bytes_sent


def _paced(client, pool, streams, stream_ids, sizes, end) -> tuple[int, int, int]:
    sent = skipped = bytes_sent = 0
    now = time.perf_counter()
    # stagger the streams' first slots over one period, as independent sensors would be
    due = [(now + (k / len(streams)) / s.rate_hz, k) for k, s in enumerate(streams)]
    heapq.heapify(due)
    while due:
        slot, k = heapq.heappop(due)
        if slot >= end:
            continue
        stream = streams[k]
        period = 1.0 / stream.rate_hz
        now = time.perf_counter()
        if slot > now:
            time.sleep(slot - now)
        elif now - slot > max(period, LATE_TOLERANCE_S):
            skipped += 1  # too late: a real-time driver drops this one rather than send a burst
            heapq.heappush(due, (slot + period, k))
            continue
        size = next(sizes[k])
        client.send(stream.topic, stream.partition, _record(pool, stream_ids[k], size, sent * 4099))
        sent += 1
        bytes_sent += size
        heapq.heappush(due, (slot + period, k))
    return sent, skipped, bytes_sent


def consumer_main(system: str, connection: dict, topics: dict[str, int], ready, producers_done, expected,
                  results: mp.Queue) -> None:
    """Reads every partition from the beginning until it has ``expected`` records or goes quiet."""
    try:
        client = consumer_client(system, connection)
        client.assign(topics)
        started = time.time()
        ready.set()
        count = nbytes = 0
        first = last = None
        latencies: list[int] = []
        last_progress = time.monotonic()
        drain_started = None
        while True:
            n, size, probe = client.poll_counted(0.2, 64)
            now_ns = time.time_ns()
            if n:
                if first is None:
                    first = now_ns
                last = now_ns
                count += n
                nbytes += size
                last_progress = time.monotonic()
                for value in probe:
                    if len(value) >= STAMP.size and bytes(value[:4]) == MAGIC:
                        latencies.append(now_ns - STAMP.unpack_from(value)[2])
            if producers_done.is_set():
                drain_started = drain_started or time.monotonic()
                if count >= expected.value:
                    break
                if time.monotonic() - last_progress > QUIET_S or time.monotonic() - drain_started > MAX_DRAIN_S:
                    break
        client.close()
        lat = np.array(latencies, dtype=np.int64)
        results.put({"received": count, "bytes_received": nbytes, "assigned": started,
                     "first_ns": first, "last_ns": last, "latency_ns": lat})
    except Exception:
        ready.set()
        results.put({"error": traceback.format_exc()})


# -- broker resource sampling --------------------------------------------------------------

class ResourceSampler:
    """Peak RSS and CPU (% of one core) of the broker processes over a phase."""

    def __init__(self, pids: list[int], interval_s: float = 0.25):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.interval_s = interval_s
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> float:
        total = 0.0
        for p in self.processes:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        rss = 0
        for p in self.processes:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> ResourceSampler:
        self._cpu0, self._t0 = self._cpu(), time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        self.cpu_percent = 100.0 * (self._cpu() - self._cpu0) / elapsed


# -- one phase on one running system --------------------------------------------------------

_phase_numbers = iter(range(1, 1 << 30))


def _own_topics(phase: Phase) -> Phase:
    """The phase with topics of its own (``camera`` -> ``camera_3``): phases never share a log."""
    n = next(_phase_numbers)
    streams = [Stream(f"{s.topic}_{n}", s.partition, s.size, s.rate_hz, s.producer) for s in phase.streams]
    return Phase(phase.workload, phase.name, phase.mode, streams, phase.duration_s, phase.replay_bytes,
                 phase.latency_matters, phase.notes, phase.max_records)


def run_phase(name: str, broker, phase: Phase) -> dict:
    ctx = mp.get_context("spawn")
    phase = _own_topics(phase)
    # the page cache still holds the previous phase's dirty data: written back now, so a
    # durable phase's fsyncs do not pay for it (ext4 commits entangle files' writeback)
    os.sync()
    for topic, partitions in phase.topics.items():
        broker.create_topic(topic, partitions, phase.mode)
    connection = broker.connection(phase.mode)
    results: mp.Queue = ctx.Queue()
    consumed: mp.Queue = ctx.Queue()
    ready, producers_done, go = ctx.Event(), ctx.Event(), ctx.Event()
    producers_ready: mp.Queue = ctx.Queue()
    expected = ctx.Value("q", 1 << 62)
    consumer = ctx.Process(target=consumer_main, args=(name, connection, phase.topics, ready, producers_done,
                                                       expected, consumed), daemon=True)
    groups = list(phase.producers.values())
    ids = {s: i for i, s in enumerate(phase.streams)}
    producers = []
    with ResourceSampler(broker.broker_pids()) as sampler:
        if not phase.replay_bytes:
            consumer.start()
        for group in groups:
            producers.append(ctx.Process(target=producer_main, args=(
                name, connection, group, [ids[s] for s in group], phase.duration_s, phase.replay_bytes,
                phase.max_records, producers_ready, go, results), daemon=True))
            producers[-1].start()
        if not phase.replay_bytes and not ready.wait(60):
            raise RuntimeError("consumer did not start")
        for _ in producers:
            _get(producers_ready, 60, "producer (start-up)")
        go.set()
        sent = [_get(results, 300 + phase.duration_s, "producer") for _ in producers]
        for p in producers:
            p.join(30)
        if phase.replay_bytes:
            fill_s = max(s["finished"] for s in sent) - min(s["started"] for s in sent)
            consumer.start()
        errors = [s["error"] for s in sent if "error" in s]
        if errors:
            producers_done.set()
            expected.value = 0
            consumer.join(30)
            raise RuntimeError("producer failed:\n" + errors[0])
        expected.value = sum(s["sent"] - s["errors"] for s in sent)
        producers_done.set()
        got = _get(consumed, 300, "consumer")
        consumer.join(30)
    if "error" in got:
        raise RuntimeError("consumer failed:\n" + got["error"])
    return _figures(phase, sent, got, sampler, fill_s if phase.replay_bytes else None)


def _get(q: mp.Queue, timeout: float, who: str) -> dict:
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise RuntimeError(f"no result from the {who} process within {timeout:.0f}s") from None


def _figures(phase: Phase, sent: list[dict], got: dict, sampler: ResourceSampler, fill_s: float | None) -> dict:
    n_sent = sum(s["sent"] for s in sent)
    skipped = sum(s["skipped"] for s in sent)
    errors = sum(s["errors"] for s in sent)
    received = got["received"]
    lost = max(0, n_sent - errors - received)
    start_ns = got["assigned"] * 1e9 if phase.replay_bytes else min(s["started"] for s in sent) * 1e9
    elapsed_s = max((got["last_ns"] or start_ns) - start_ns, 1) / 1e9
    lat_ms = got["latency_ns"] / 1e6
    pct = (lambda q: float(np.percentile(lat_ms, q))) if len(lat_ms) else (lambda q: None)
    if len(lat_ms) > LATENCY_SAMPLES_KEPT:
        kept = np.sort(lat_ms)[np.linspace(0, len(lat_ms) - 1, LATENCY_SAMPLES_KEPT).astype(int)]
    else:
        kept = np.sort(lat_ms)
    out = {
        "mb_s": got["bytes_received"] / 1e6 / elapsed_s,
        "records_s": received / elapsed_s,
        "p50_ms": pct(50), "p99_ms": pct(99), "p999_ms": pct(99.9),
        "broker_rss_mb": sampler.peak_rss / 1e6, "broker_cpu_pct": sampler.cpu_percent,
        "drops": skipped + errors + lost,
        "skipped_late": skipped, "refused": errors, "lost": lost,
        "sent": n_sent, "received": received, "latency_samples": len(lat_ms),
        "offered_mb_s": phase.offered_mb_s, "elapsed_s": elapsed_s,
        "latency_ms_sorted": kept.round(4).tolist(),
    }
    produce_s = max(s["finished"] for s in sent) - min(s["started"] for s in sent)
    out["produce_mb_s"] = sum(s["bytes_sent"] for s in sent) / 1e6 / max(produce_s, 1e-9)
    out["produce_records_s"] = n_sent / max(produce_s, 1e-9)
    if fill_s:
        out["fill_mb_s"] = sum(s["bytes_sent"] for s in sent) / 1e6 / fill_s
    return out


# -- runs per system and mode ---------------------------------------------------------------

def run_system(name: str, plan, base: Path, options: dict, results: dict) -> None:
    module = system_module(name)
    modes = plan.modes()
    if not modes:
        return
    # one broker for every mode where durability is a topic setting, else one per mode
    per_topic = module.system(base / name, modes[0], options).modes_per_topic
    for group in ([modes] if per_topic else [[m] for m in modes]):
        phases = [p for p in plan.phases if p.mode in group]
        label = "+".join(group)
        broker = module.system(base / f"{name}-{'-'.join(group)}", group[0], options)
        started = time.monotonic()
        try:
            broker.start()
        except SystemUnavailable as exc:
            _missing(name, phases, results, f"unavailable: {exc}")
            continue
        except Exception as exc:  # reported, not fatal to the run
            _missing(name, phases, results, f"failed to start: {exc!r}"[:500])
            continue
        for mode in group:
            results["systems"][f"{name}/{mode}"] = broker.describe(mode)
        print(f"[{name}/{label}] {'; '.join(broker.describe(m) for m in group)} up in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        try:
            try:
                run_phase(name, broker, replace(WARMUP, mode=group[0]))  # JIT, page cache, connections: not measured
            except Exception as exc:
                print(f"  warm-up failed: {exc}"[:300], flush=True)
            for phase in phases:
                t0 = time.monotonic()
                try:
                    figures = run_phase(name, broker, phase)
                except Exception as exc:
                    figures = {"error": str(exc)[-800:]}
                results["phases"].setdefault(phase.key, {"workload": phase.workload, "name": phase.name,
                                                         "mode": phase.mode, "systems": {}})
                results["phases"][phase.key]["systems"][name] = figures
                print(f"  {phase.key}: {report.one_line(figures)} ({time.monotonic() - t0:.0f}s)", flush=True)
        finally:
            broker.stop()
            _remove(base / f"{name}-{'-'.join(group)}")


def _missing(name: str, phases: list[Phase], results: dict, reason: str) -> None:
    print(f"[{name}] {reason}", flush=True)
    results["missing"][name] = reason
    for phase in phases:
        results["phases"].setdefault(phase.key, {"workload": phase.workload, "name": phase.name,
                                                 "mode": phase.mode, "systems": {}})
        results["phases"][phase.key]["systems"][name] = {"error": reason}


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short phases, durable mode for telemetry only, 512 MiB replay and dd (< 3 minutes)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {','.join(WORKLOADS)}")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"comma list of {','.join(ALL_SYSTEMS)}")
    parser.add_argument("--profile-edge", metavar="DIR", help="run the edge broker under cProfile, .prof files to DIR")
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--tag", help="results file <date>-<tag>.json (default: '-quick' for --quick, none for full)")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    plan = build_plan([w for w in args.workloads.split(",") if w], args.quick)
    base = WORK_DIR / "compare"
    _remove(base)
    base.mkdir(parents=True)
    run_started = time.monotonic()
    results: dict = {"quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": _machine(base),
                     "systems": {}, "missing": {}, "phases": {}, "disk": {}}
    if "disk" in systems:
        results["disk"] = disk_system.measure(base / "dd", 512 if args.quick else 2048)
        print("[disk] " + ", ".join(f"{k} {v:,.0f}" for k, v in results["disk"].items()), flush=True)
    else:
        results["missing"]["disk"] = "not selected (--systems): no dd ceiling"
    options = {"profile_dir": args.profile_edge} if args.profile_edge else {}
    for name in BROKER_SYSTEMS:
        if name in systems:
            run_system(name, plan, base, options if name == "edge" else {}, results)
        else:
            results["missing"][name] = "not selected (--systems)"
    results["duration_s"] = time.monotonic() - run_started
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    _remove(base)
    report.print_report(results)
    path = report.save(results, args.tag if args.tag is not None else ("quick" if args.quick else ""))
    print(f"\nresults: {path}")
    if not args.no_charts:
        for chart in report.charts(results, path):
            print(f"chart: {chart}")
    return 0


def _machine(base: Path) -> dict:
    # other work on the machine skews every figure: the load average is kept with the results
    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "filesystem": _filesystem(base)}


def _filesystem(path: Path) -> str:
    best = None
    for part in psutil.disk_partitions(all=True):
        if str(path).startswith(part.mountpoint) and (best is None or len(part.mountpoint) > len(best.mountpoint)):
            best = part
    return f"{best.device} {best.fstype} on {best.mountpoint}" if best else "unknown"
