"""The broker gone under live drivers: memory stays bounded, drops are counted, everything
resumes by itself.

A real broker (``edge broker --config``) and the real driver processes of configs/sim.toml
(two simulated cameras, one simulated LiDAR), started with the argv, environment, session
and log file ``edge up`` gives them (edge.commands.up.build_specs), record; then the broker
is taken away for ``EDGE_OUTAGE_S`` seconds (default 5; ``scripts/faults`` runs 60):

- ``dead``: SIGKILL, started again after the outage (a crash, a slow restart);
- ``hung``: SIGSTOP, SIGCONT after the outage (a broker that holds its connections open
  and answers nothing: the case ZMQ_IMMEDIATE cannot see).

(Not under ``edge up`` itself: its supervisor restarts a dead broker within 0.5 s, so the
broker could not stay away for a minute without freezing the supervisor too.)

The RSS of every driver is sampled every 0.25 s throughout. Checked:

- every driver keeps running (no exit) and stops cleanly (exit 0) at the end;
- no driver's RSS rises, during or after the outage, above its pre-outage level by more
  than its producer's buffer cap allows (``rss_bound_mib``);
- the outage is counted, live: each driver's first health record on ``_health`` after the
  return shows ``dropped.broker`` or ``unknown`` grown when the broker was dead (a hung
  broker costs nothing: the idempotent producer holds new batches in its buffer and sends
  the ones whose acknowledgement timed out again, acknowledged once, see
  broker/client/producer.py) and capture gone on; and at the
  end every frame a driver captured is in the log or counted as dropped or unknown
  (captured frames missing from the log <= drops + unknowns, > 0 when it was dead; no frame
  stored twice);
- within RESUME_DEADLINE_S of the broker's return every sensor topic has records captured
  after the return, at offsets at or past the pre-outage log end, and every driver reports
  ``state=running``;
- every record in the log before the outage is still there, byte for byte.

A short outage against a fake producer, in process: tests/drivers/test_runtime.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import zlib
from pathlib import Path

import psutil
import pytest

from broker.client import Consumer
from edge.commands.up import build_specs
from edge.config import load_config
from edge.supervisor import LAYER_DRIVERS
from tests.integration.test_edge_up import sim_config, topic_ends, wait_for
from tests.support.broker_process import BrokerProcess

OUTAGE_S = float(os.environ.get("EDGE_OUTAGE_S", "5"))
SENSOR_TOPICS = {"front": "camera.front", "rear": "camera.rear", "top": "lidar.top"}
MiB = 1024 * 1024
SAMPLE_EVERY_S = 0.25  # 0.5 s made the 10 pre-outage samples cost 5 s; finer also catches a sharper peak
RSS_SLACK_MiB = 32  # see rss_bound_mib
RESUME_DEADLINE_S = 20.0


def rss_bound_mib() -> float:
    """How far a driver's RSS may rise above its pre-outage level while the broker is away.

    A driver's producer (drivers/processes.py) caps what it buffers plus what it has in
    flight at ``buffer_bytes`` (128 MiB) and refuses sends beyond it (``on_full="fail"``: a
    counted drop); the runtime queue holds ``queue_size`` raw frames with or without a
    broker; one batch (at most ``max_batch_bytes``) is encoded as one more copy. So the
    bound is ``buffer_bytes + max_batch_bytes`` plus slack for the allocator. A driver that
    keeps what it cannot deliver (frames, or batches queued behind a connection that
    answers nothing) grows with the outage and passes it within a minute at the LiDAR's
    ~3 MiB/s."""
    from drivers.processes import _producer

    probe = _producer("ipc:///nonexistent/edge-broker-outage-probe.sock")
    try:
        return (probe.buffer_bytes + probe.max_batch_bytes) / MiB + RSS_SLACK_MiB
    finally:
        probe.close(timeout=1.0)


class Sampler:
    """Every driver's RSS (MiB) and liveness every SAMPLE_EVERY_S, each sample tagged with the phase."""

    def __init__(self, drivers: dict[str, subprocess.Popen]):
        self.drivers = drivers
        self.phase = "starting"
        self.samples: dict[str, list[tuple[str, float]]] = {name: [] for name in drivers}
        self.exits: dict[str, int] = {}
        self._procs = {name: psutil.Process(p.pid) for name, p in drivers.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            for name, proc in self.drivers.items():
                code = proc.poll()
                if code is not None:
                    self.exits.setdefault(name, code)
                    continue
                try:
                    self.samples[name].append((self.phase, self._procs[name].memory_info().rss / MiB))
                except psutil.NoSuchProcess:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def rss(self, name: str, phase: str) -> list[float]:
        return [rss for p, rss in self.samples[name] if p == phase]


def start_drivers(config: Path, data_dir: Path, endpoint: str) -> dict[str, subprocess.Popen]:
    """The driver children exactly as ``edge up`` starts them (Supervisor._spawn)."""
    specs = [s for s in build_specs(load_config(config), str(config), data_dir, endpoint) if s.layer == LAYER_DRIVERS]
    log_dir = data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = {}
    for spec in specs:
        name = spec.argv[spec.argv.index("--name") + 1]
        with open(log_dir / f"{spec.name}.log", "ab") as log:
            procs[name] = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **spec.env}, start_new_session=True)
    if procs.keys() != SENSOR_TOPICS.keys():
        raise AssertionError(f"configs/sim.toml no longer has the sensors {sorted(SENSOR_TOPICS)}: {sorted(procs)}")
    return procs


def stop_drivers(drivers: dict[str, subprocess.Popen]) -> dict[str, int]:
    """SIGTERM, as ``edge up`` stops them (SIGKILL after 30 s); the exit codes."""
    for proc in drivers.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for name, proc in drivers.items():
        try:
            codes[name] = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait(10)
    return codes


def read_range(endpoint: str, topic: str, start: int, end: int | None = None, timeout: float = 60.0):
    """The records of ``topic`` in [start, end) (end None: up to the log end now)."""
    if end is None:
        end = topic_ends(endpoint)[topic]
    records = []
    with Consumer(endpoint, max_wait_ms=100) as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek(topic, 0, start)
        deadline = time.monotonic() + timeout
        while consumer.position(topic, 0) < end:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read to {consumer.position(topic, 0)} of {end} in {timeout:.0f}s")
            records.extend(consumer.poll(1.0))
    return [r for r in records if r.offset < end]


def digest(records) -> list[tuple[int, str | None, int]]:
    return [(r.offset, r.header("seq"), zlib.crc32(bytes(r.value))) for r in records]


def health_records(endpoint: str) -> list[dict]:
    return [json.loads(bytes(r.value)) for r in read_range(endpoint, "_health", 0)]


def latest_health(endpoint: str, since_ns: int = 0) -> dict[str, dict]:
    """The newest health record of each driver among those stamped at or after ``since_ns``."""
    return {b["sensor"]: b for b in health_records(endpoint) if b.get("sensor") in SENSOR_TOPICS
            and b["time_ns"] >= since_ns}


def first_captured_after(endpoint: str, topic: str, start: int, since_ns: int) -> tuple[int, int] | None:
    """(offset, capture_ns) of the first record from offset ``start`` captured at or after ``since_ns``."""
    for r in read_range(endpoint, topic, start):
        if int(r.header("capture_ns")) >= since_ns:
            return r.offset, int(r.header("capture_ns"))
    return None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dead", "hung"])
def test_live_drivers_ride_out_the_broker_gone(tmp_path, mode):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = sim_config(tmp_path)
    endpoint = f"ipc://{data_dir}/broker.sock"
    topics = set(SENSOR_TOPICS.values())
    bound = rss_bound_mib()
    with BrokerProcess(data_dir, endpoint, extra_args=["--config", str(config)]) as broker:  # SIGKILLed on the way out
        drivers = start_drivers(config, data_dir, endpoint)
        sampler = Sampler(drivers)

        def logs() -> str:
            return "\n".join([f"--- broker\n{broker.log()}"] + [
                f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
                for log in sorted((data_dir / "logs").glob("*.log"))])

        try:
            first = wait_for(lambda: (e := topic_ends(endpoint)) and topics <= e.keys() and e, 30, "every sensor topic")
            wait_for(lambda: all(topic_ends(endpoint)[t] > first[t] + 10 for t in topics), 30, "every topic to grow")
            # the pre-outage level: 10 samples (2.5 s) while every driver records
            sampler.phase = "before"
            wait_for(lambda: all(len(sampler.rss(n, "before")) >= 10 for n in drivers), 30, "pre-outage RSS samples")
            wait_for(lambda: latest_health(endpoint).keys() == SENSOR_TOPICS.keys(), 10, "every driver's health")

            # ---- the broker goes away ----------------------------------------------------
            pre_ends = topic_ends(endpoint)
            pre_digest = {t: digest(read_range(endpoint, t, 0, pre_ends[t])) for t in topics}
            pre_health = latest_health(endpoint)
            sampler.phase = "outage"
            if mode == "dead":
                broker.kill()
            else:
                os.kill(broker.proc.pid, signal.SIGSTOP)
            down_at = time.monotonic()
            time.sleep(OUTAGE_S)  # the outage itself, the one fixed wait
            if mode == "dead":
                broker.start()  # returns once the broker answers
            else:
                os.kill(broker.proc.pid, signal.SIGCONT)
                wait_for(lambda: topic_ends(endpoint), 30, "the broker to answer again")
            outage_s = time.monotonic() - down_at
            back_ns = time.time_ns()
            sampler.phase = "after"

            # ---- everything resumes by itself ----------------------------------------------
            resumed: dict[str, tuple[int, int]] = {}

            def every_topic_resumed() -> bool:
                for t in topics - resumed.keys():
                    if (found := first_captured_after(endpoint, t, pre_ends[t], back_ns)) is not None:
                        resumed[t] = found
                return resumed.keys() == topics

            wait_for(every_topic_resumed, RESUME_DEADLINE_S, "records captured after the return on every topic")
            resume_s = {t: (capture_ns - back_ns) / 1e9 for t, (_, capture_ns) in resumed.items()}
            for t, (offset, _) in resumed.items():
                assert offset >= pre_ends[t], f"{t}: a new record at offset {offset}, below the pre-outage end"
            post_health = wait_for(
                lambda: (h := latest_health(endpoint, since_ns=back_ns)).keys() == SENSOR_TOPICS.keys()
                and all(b["state"] == "running" for b in h.values()) and h,
                RESUME_DEADLINE_S, "every driver to report state=running after the return")
            wait_for(lambda: all(len(sampler.rss(n, "after")) >= 6 for n in drivers), 30, "post-outage RSS samples")

            for t in topics:
                assert digest(read_range(endpoint, t, 0, pre_ends[t])) == pre_digest[t], \
                    f"{t}: records stored before the outage are gone or changed"
            assert not sampler.exits, f"drivers exited: {sampler.exits}"

            # ---- drops counted, live -------------------------------------------------------
            for sensor, now in post_health.items():
                before = pre_health[sensor]
                assert now["captured"] > before["captured"], f"{sensor}: capture stopped: {before} -> {now}"
                noticed = (now["dropped"]["broker"] - before["dropped"]["broker"]
                           + now.get("unknown", 0) - before.get("unknown", 0))
                # a hung broker costs nothing now: the idempotent producer holds and resends
                # what timed out, and the broker acknowledges each batch once
                assert noticed > 0 or mode == "hung", \
                    (f"{sensor}: no broker drops or unknown deliveries across a {outage_s:.0f} s outage: "
                     f"{before} -> {now}")

            # ---- memory bounded ------------------------------------------------------------
            rss = {}
            for name in drivers:
                base = max(sampler.rss(name, "before"))
                peak = max(sampler.rss(name, "outage"))
                after = max(sampler.rss(name, "after"))
                rss[name] = (base, peak, after)
                assert peak - base < bound, (f"driver {name}: RSS {base:.0f} -> {peak:.0f} MiB in a {outage_s:.0f} s "
                                             f"outage ({mode}), bound +{bound:.0f}")
                assert after - base < bound, f"driver {name}: RSS {base:.0f} -> {after:.0f} MiB after the outage"
        except BaseException:
            print(logs())
            raise
        finally:
            sampler.stop()
            stop_codes = stop_drivers(drivers)

        assert stop_codes == dict.fromkeys(drivers, 0), f"drivers did not stop cleanly: {stop_codes}\n{logs()}"

        # ---- every captured frame is in the log or counted as dropped -----------------------
        final = {b["sensor"]: b for b in health_records(endpoint) if b.get("state") == "stopped"}
        assert final.keys() == SENSOR_TOPICS.keys(), f"final health records of {sorted(final)} only"
        accounts = {}
        for sensor, topic in SENSOR_TOPICS.items():
            seqs = [int(r.header("seq")) for r in read_range(endpoint, topic, 0)]
            assert len(seqs) == len(set(seqs)), f"{topic}: a frame stored twice"
            captured, dropped = final[sensor]["captured"], final[sensor]["dropped"]
            assert seqs and max(seqs) < captured, f"{topic}: seq {max(seqs)} beyond the {captured} captured"
            missing = captured - len(seqs)
            unknown = final[sensor].get("unknown", 0)
            assert missing <= sum(dropped.values()) + unknown and (missing > 0 or mode == "hung"), \
                f"{topic}: {missing} of {captured} captured frames not in the log, counted drops: {dropped}, " \
                f"unknown: {unknown}"
            accounts[sensor] = (captured, len(seqs), dropped)

    print(f"\nbroker {mode} for {outage_s:.1f} s; records captured after its return stored from "
          + ", ".join(f"{t} +{s:.2f} s" for t, s in sorted(resume_s.items())))
    for name, (base, peak, after) in rss.items():
        captured, stored, dropped = accounts[name]
        print(f"  {name}: RSS {base:.0f} -> peak {peak:.0f} -> after {after:.0f} MiB (bound +{bound:.0f}); "
              f"captured {captured}, stored {stored}, dropped {dropped}")
