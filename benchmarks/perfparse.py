"""The pure parts of ``python -m benchmarks.run``: reading the peers' own tools, spread, quiet, schema.

Nothing here starts a process; every function maps text or numbers to numbers, so
``tests/benchmarks/test_perfparse.py`` checks them in milliseconds.

Tool outputs read (verbatim formats of the versions the run uses):
- ``kafka-producer-perf-test`` (``org.apache.kafka.tools.ProducerPerformance``), its last line:
  ``N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
  P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.`` (MB = 2^20 bytes);
- ``kafka-consumer-perf-test`` (``ConsumerPerformance``): a CSV header line then one values line
  (``data.consumed.in.MB, MB.sec, ..., fetch.MB.sec, fetch.nMsg.sec``);
- ``kafka-e2e-latency`` (``EndToEndLatency``): ``Avg latency: A ms`` and
  ``Percentiles: 50th = P50, 99th = P99, 99.9th = P999`` (whole milliseconds);
- ``nats bench`` (natscli 0.5): the summary line ``NATS JetStream asynchronous publisher stats:
  38,297 msgs/sec ~ 37 MiB/sec ~ min: 3,334.15us ~ avg: ... ~ P50: 7,442.70us ~ P90: ... ~
  P99: ... ~ P99.9: ...`` (sizes in binary units, rounded: the harness recomputes MB/s from
  msgs/sec and the record size; publishers print their publish-acknowledgement latency);
- ``fio --output-format=json``: ``jobs[].write|read.bw_bytes``;
- ``dd``: ``N bytes (...) copied, S s, ...`` on stderr.

Figures in the JSON are MB/s in 10^6 bytes (``mb_s``) unless a key says ``mib``.

Spread: every figure is a ``summary`` of its repetitions: ``{"median", "min", "max", "n",
"values"}``. Quiet: a run is called quiet only when the load average before it was low and
the machine's CPU time spent outside this run's processes stayed small while it ran.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

MiB = 1024 * 1024
SCHEMA = "edge-bench-run/1"
QUIET_LOAD_PER_CPU = 0.25  # load average per CPU at the start above which the machine is shared
QUIET_FOREIGN_SHARE = 0.10  # CPU time of other processes, as a share of all CPUs, during the run


class ToolOutputError(ValueError):
    """A peer tool printed something this parser does not recognise (wrong version, failure)."""


class SchemaError(ValueError):
    """A results document that does not have the shape of ``SCHEMA``."""


# -- the peers' own tools ------------------------------------------------------------------

_NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def _num(text: str) -> float:
    return float(text.replace(",", ""))


_PRODUCER_FINAL = re.compile(
    rf"{_NUMBER} records sent, {_NUMBER} records/sec \({_NUMBER} MB/sec\), {_NUMBER} ms avg latency, "
    rf"{_NUMBER} ms max latency, {_NUMBER} ms 50th, {_NUMBER} ms 95th, {_NUMBER} ms 99th, {_NUMBER} ms 99\.9th")


def parse_producer_perf(text: str) -> dict[str, float]:
    """The final summary line of kafka-producer-perf-test (the last one when it printed several)."""
    matches = _PRODUCER_FINAL.findall(text)
    if not matches:
        raise ToolOutputError(f"no producer-perf-test summary line in: {text[-400:]!r}")
    records, rate, mib_s, avg, worst, p50, p95, p99, p999 = map(_num, matches[-1])
    return {"records": records, "records_s": rate, "mb_s": mib_s * MiB / 1e6, "avg_ms": avg, "max_ms": worst,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "p999_ms": p999}


def parse_consumer_perf(text: str) -> dict[str, float]:
    """The values line under the CSV header of kafka-consumer-perf-test. ``mb_s`` counts from the
    tool's start (group join included); ``fetch_mb_s`` from the first fetch (join excluded)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("start.time,"):
            header = [name.strip() for name in line.split(",")]
            values = [value.strip() for value in lines[i + 1].split(",")]
            if len(values) != len(header):
                break
            row = dict(zip(header, values, strict=True))
            try:
                return {"mb_s": _num(row["MB.sec"]) * MiB / 1e6, "records": _num(row["data.consumed.in.nMsg"]),
                        "records_s": _num(row["nMsg.sec"]), "rebalance_ms": _num(row["rebalance.time.ms"]),
                        "fetch_ms": _num(row["fetch.time.ms"]), "fetch_mb_s": _num(row["fetch.MB.sec"]) * MiB / 1e6,
                        "fetch_records_s": _num(row["fetch.nMsg.sec"])}
            except (KeyError, ValueError) as exc:
                raise ToolOutputError(f"consumer-perf-test values not understood: {exc}: {lines[i + 1]!r}") from None
    raise ToolOutputError(f"no consumer-perf-test header and values in: {text[-400:]!r}")


_E2E_AVG = re.compile(rf"Avg latency: {_NUMBER} ms")
_E2E_PCT = re.compile(rf"Percentiles: 50th = {_NUMBER}, 99th = {_NUMBER}, 99\.9th = {_NUMBER}")


def parse_e2e_latency(text: str) -> dict[str, float]:
    avg, pct = _E2E_AVG.search(text), _E2E_PCT.search(text)
    if avg is None or pct is None:
        raise ToolOutputError(f"no end-to-end latency summary in: {text[-400:]!r}")
    p50, p99, p999 = map(_num, pct.groups())
    return {"avg_ms": _num(avg.group(1)), "p50_ms": p50, "p99_ms": p99, "p999_ms": p999}


_NATS_UNITS = {"B": 1.0, "KiB": 1024.0, "MiB": MiB, "GiB": 1024.0 * MiB, "KB": 1e3, "MB": 1e6, "GB": 1e9}
_NATS_STATS = re.compile(rf"stats: {_NUMBER} msgs/sec ~ {_NUMBER} ?([KMG]i?B|B)/sec")
_NATS_LATENCY = re.compile(r"\b(p50|p90|p99|p99\.9|avg|max): ([0-9][0-9,]*(?:\.[0-9]+)?)(µs|us|ms|s)\b",
                           re.IGNORECASE)
_TO_MS = {"µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_nats_bench(text: str) -> dict[str, float]:
    """The aggregated ``stats:`` line of ``nats bench`` (the first one: the aggregate precedes
    per-client lines), and latency percentiles where the mode prints them."""
    match = _NATS_STATS.search(text)
    if match is None:
        raise ToolOutputError(f"no 'stats: ... msgs/sec' line from nats bench in: {text[-400:]!r}")
    rate, amount, unit = _num(match.group(1)), _num(match.group(2)), match.group(3)
    result = {"records_s": rate, "mb_s": amount * _NATS_UNITS[unit] / 1e6}
    for name, value, unit_name in _NATS_LATENCY.findall(text):
        key = name.lower().replace(".", "") + "_ms"
        result.setdefault(key, _num(value) * _TO_MS[unit_name if unit_name == "µs" else unit_name.lower()])
    return result


def parse_fio_json(text: str) -> dict[str, float]:
    """Bandwidth of a fio job from its JSON output (any text fio printed before the JSON is skipped)."""
    start = text.find("{")
    try:
        doc = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise ToolOutputError(f"fio output is not JSON: {exc}") from None
    if not doc or not doc.get("jobs"):
        raise ToolOutputError("fio JSON has no jobs")
    total_bytes = sum(job[side]["io_bytes"] for job in doc["jobs"] for side in ("read", "write"))
    bandwidth = sum(job[side]["bw_bytes"] for job in doc["jobs"] for side in ("read", "write"))
    if total_bytes <= 0:
        raise ToolOutputError("fio moved no bytes")
    return {"mb_s": bandwidth / 1e6, "bytes": float(total_bytes)}


_DD = re.compile(r"(\d+) bytes .*copied, ([0-9.]+) s")


def parse_dd(stderr: str) -> dict[str, float]:
    match = _DD.search(stderr)
    if match is None:
        raise ToolOutputError(f"no 'bytes copied' line from dd: {stderr[-300:]!r}")
    return {"mb_s": int(match.group(1)) / float(match.group(2)) / 1e6, "bytes": float(match.group(1))}


# -- spread ----------------------------------------------------------------------------------

def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Median, min and max of the repetitions (and the values themselves)."""
    kept = [float(v) for v in values]
    if not kept:
        raise ValueError("no repetitions to summarise")
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept), "n": len(kept), "values": kept}


def summarize_runs(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per metric, the summary over the repetitions that report it."""
    keys = sorted({key for run in runs for key in run})
    return {key: summarize(run[key] for run in runs if key in run) for key in keys}


def spread_text(summary: dict[str, Any], digits: int = 1) -> str:
    """``median (min–max)``, as the report prints every figure."""
    def fmt(x: float) -> str:
        return f"{x:,.{digits}f}"
    if summary["min"] == summary["max"]:
        return f"{fmt(summary['median'])} (n={summary['n']})"
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}–{fmt(summary['max'])})"


# -- quiet -------------------------------------------------------------------------------------

def quiet_verdict(cpus: int, load_before: list[float], foreign_cpu_s: float, wall_s: float) -> tuple[bool, str]:
    """Whether the machine was quiet enough to trust single ratios, and why not.

    ``foreign_cpu_s``: CPU seconds the machine spent outside this run's process tree while it
    ran (busy time minus ours); the run's own load is in the load average after it, so that
    one is recorded but not judged."""
    reasons = []
    limit = QUIET_LOAD_PER_CPU * cpus
    if max(load_before[:2]) > limit:
        reasons.append(f"load average before {load_before[0]:.2f}/{load_before[1]:.2f} (1/5 min) > {limit:.2f}")
    share = foreign_cpu_s / (wall_s * cpus) if wall_s > 0 else 0.0
    if share > QUIET_FOREIGN_SHARE:
        reasons.append(f"other processes used {share:.0%} of the CPUs during the run")
    if reasons:
        return False, "NOT quiet (noisy, machine shared): " + "; ".join(reasons)
    return True, "quiet"


# -- schema ------------------------------------------------------------------------------------

_TOP_LEVEL = {"schema": str, "started": str, "finished": str, "quick": bool, "repetitions": int,
              "machine": dict, "skipped": list, "ceiling": dict, "rows": list, "resources": dict, "ratios": list}
_MACHINE = {"cpus": int, "load_before": list, "load_after": list, "quiet": bool, "quiet_note": str}
_RESOURCES = {"peak_rss_mb": float, "cpu_s": float, "gb_moved": float, "cpu_s_per_gb": float}
_ROW = {"section": str, "system": str, "client": str, "case": dict, "metrics": dict}


def _check_fields(where: str, obj: Any, fields: Mapping[str, type], problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where} is not an object")
        return
    for name, kind in fields.items():
        if name not in obj:
            problems.append(f"{where}.{name} missing")
        elif not isinstance(obj[name], kind) or (kind is int and isinstance(obj[name], bool)):
            problems.append(f"{where}.{name} is {type(obj[name]).__name__}, not {kind.__name__}")


def _check_summary(where: str, summary: Any, problems: list[str]) -> None:
    if not isinstance(summary, dict) or not {"median", "min", "max", "n", "values"} <= summary.keys():
        problems.append(f"{where} is not a summary (median, min, max, n, values)")
        return
    if summary["n"] != len(summary["values"]) or not summary["min"] <= summary["median"] <= summary["max"]:
        problems.append(f"{where}: n or min <= median <= max does not hold")


def validate_run(doc: Any) -> None:
    """Raise ``SchemaError`` naming every field that does not fit ``SCHEMA``."""
    problems: list[str] = []
    _check_fields("run", doc, _TOP_LEVEL, problems)
    if not problems:
        if doc["schema"] != SCHEMA:
            problems.append(f"run.schema is {doc['schema']!r}, not {SCHEMA!r}")
        _check_fields("run.machine", doc["machine"], _MACHINE, problems)
        for i, skip in enumerate(doc["skipped"]):
            _check_fields(f"run.skipped[{i}]", skip, {"what": str, "reason": str}, problems)
        for name, summary in doc["ceiling"].items():
            _check_summary(f"run.ceiling.{name}", summary, problems)
        for name, used in doc["resources"].items():
            _check_fields(f"run.resources.{name}", used, _RESOURCES, problems)
        for i, row in enumerate(doc["rows"]):
            _check_fields(f"run.rows[{i}]", row, _ROW, problems)
            for metric, summary in (row.get("metrics") or {}).items():
                _check_summary(f"run.rows[{i}].metrics.{metric}", summary, problems)
    if problems:
        raise SchemaError("; ".join(problems))
