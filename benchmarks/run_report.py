"""The report of ``python -m benchmarks.run``: ratios and goals from the results document, text, charts.

Pure functions of the JSON document (``perfparse.SCHEMA``), so a saved run can be re-rendered:
``python -m benchmarks.run_report benchmarks/results/run-<date>.json``.

Ratios (issue 24's goals, each figure's median; min–max stay in the rows):
- Kafka's producer-perf-test on both sides, 1 MB records: edge MB/s ≥ 1.5× Kafka's (written
  and durable); durable edge MB/s ≥ 80% of fio's fdatasync ceiling;
- 100-byte records: edge records/s ≥ Kafka's; consumer-perf-test 1 MB: edge fetch MB/s ≥ Kafka's;
- kafka-e2e-latency p99: edge ≤ Kafka; broker peak RSS: edge ≤ 0.1× Kafka's;
- every producer and consumer row as % of its ceiling (written: fio buffered write; durable:
  fio fdatasync write; consumer: fio cached read; dd's figure where fio is missing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .perfparse import spread_text

TOOL_PRODUCER, TOOL_CONSUMER, TOOL_E2E = "kafka-producer-perf-test", "kafka-consumer-perf-test", "kafka-e2e-latency"
CEILING_FOR = {("producer", "written"): ("fio_write_buffered", "dd_write_buffered"),
               ("producer", "durable"): ("fio_write_fdatasync", "dd_write_fdatasync"),
               ("consumer", "written"): ("fio_read_cached", "dd_read"),
               ("consumer", "durable"): ("fio_read_cached", "dd_read")}


def _median(doc: dict[str, Any], section: str, system: str, client: str, metric: str, **case: Any) -> float | None:
    for row in doc["rows"]:
        if (row["section"], row["system"], row["client"]) == (section, system, client) and \
                all(row["case"].get(k) == v for k, v in case.items()) and metric in row["metrics"]:
            return float(row["metrics"][metric]["median"])
    return None


def _ceiling(doc: dict[str, Any], section: str, mode: str) -> tuple[str, float] | None:
    for name in CEILING_FOR.get((section, mode), ()):
        if name in doc["ceiling"]:
            return name, float(doc["ceiling"][name]["median"])
    return None


def _goal(what: str, edge: float | None, peer: float | None, goal: float, higher_is_better: bool) -> dict[str, Any]:
    if edge is None or peer is None or peer == 0:
        return {"what": what, "edge": edge, "peer": peer, "ratio": None, "goal": goal, "met": None}
    ratio = edge / peer
    met = ratio >= goal if higher_is_better else ratio <= goal
    return {"what": what, "edge": edge, "peer": peer, "ratio": round(ratio, 3), "goal": goal, "met": met}


def ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for mode in ("written", "durable"):
        out.append(_goal(f"1 MB producer MB/s, edge/kafka ({mode}, producer-perf-test both)",
                         _median(doc, "producer", "edge", TOOL_PRODUCER, "mb_s", record_bytes=1_000_000, mode=mode),
                         _median(doc, "producer", "kafka", TOOL_PRODUCER, "mb_s", record_bytes=1_000_000, mode=mode),
                         1.5, True))
    durable = _ceiling(doc, "producer", "durable")
    out.append(_goal(f"1 MB durable producer MB/s, edge/{durable[0] if durable else 'fio fdatasync'}",
                     _median(doc, "producer", "edge", TOOL_PRODUCER, "mb_s", record_bytes=1_000_000, mode="durable"),
                     durable[1] if durable else None, 0.8, True))
    out.append(_goal("100 B producer records/s, edge/kafka (producer-perf-test both)",
                     _median(doc, "producer", "edge", TOOL_PRODUCER, "records_s", record_bytes=100),
                     _median(doc, "producer", "kafka", TOOL_PRODUCER, "records_s", record_bytes=100), 1.0, True))
    consumed = {system: _median(doc, "consumer", system, TOOL_CONSUMER, "fetch_mb_s", record_bytes=1_000_000,
                                mode="written") for system in ("edge", "kafka")}
    out.append(_goal("1 MB consumer fetch MB/s, edge/kafka (consumer-perf-test both)", consumed["edge"],
                     consumed["kafka"], 1.0, True))
    out.append(_goal("e2e p99 ms, edge/kafka (kafka-e2e-latency both, 1 KB)",
                     _median(doc, "e2e", "edge", TOOL_E2E, "p99_ms"), _median(doc, "e2e", "kafka", TOOL_E2E, "p99_ms"),
                     1.0, False))
    resources = doc["resources"]
    out.append(_goal("broker peak RSS MB, edge/kafka",
                     resources.get("edge", {}).get("peak_rss_mb"), resources.get("kafka", {}).get("peak_rss_mb"),
                     0.1, False))
    return out


def ceiling_shares(doc: dict[str, Any]) -> list[tuple[str, float, str, float]]:
    """(row label, median MB/s, ceiling name, share) for every throughput row with a ceiling."""
    shares = []
    for row in doc["rows"]:
        mode = row["case"].get("mode", "written")
        ceiling = _ceiling(doc, row["section"], mode)
        metric = "fetch_mb_s" if "fetch_mb_s" in row["metrics"] else "mb_s"
        if ceiling is None or metric not in row["metrics"] or row["section"] == "curve":
            continue
        value = float(row["metrics"][metric]["median"])
        label = f"{row['system']:<6} {row['client']:<26} {row['section']:<8} {row['case'].get('record_bytes')} B {mode}"
        shares.append((label, value, ceiling[0], value / ceiling[1]))
    return shares


_SHOWN = ("mb_s", "fetch_mb_s", "records_s", "p50_ms", "p99_ms", "p999_ms")


def render(doc: dict[str, Any], charts: str) -> str:
    machine = doc["machine"]
    lines = [f"#### benchmarks.run {'--quick ' if doc['quick'] else ''}{doc['started']} .. {doc['finished']}"
             f"{'' if doc['complete'] else ' (PARTIAL)'}",
             f"  {machine['cpus']} CPUs, {machine.get('filesystem', '?')}, {machine.get('wall_s', 0):.0f} s; "
             "load average "
             f"before {machine['load_before']}, after {machine['load_after']}; other processes' CPU "
             f"{machine.get('foreign_cpu_s', 0):.0f} s: {machine['quiet_note']}",
             "  figures: median (min–max) of the repetitions; MB = 10^6 bytes"]
    for name, text in doc["peers"].items():
        lines.append(f"  {name}: {text}")
    for skip in doc["skipped"]:
        lines.append(f"  SKIPPED {skip['what']}: {skip['reason']}")
    if doc["ceiling"]:
        lines.append("\n== ceiling (MB/s)")
        lines += [f"  {name:<22} {spread_text(summary, 0)}" for name, summary in sorted(doc["ceiling"].items())]
    for section in ("producer", "consumer", "e2e", "publish-ack", "curve"):
        rows = [row for row in doc["rows"] if row["section"] == section]
        if rows:
            lines.append(f"\n== {section}")
        for row in rows:
            case = row["case"]
            where = (f"{case.get('axis')}={case.get('x')}" if section == "curve"
                     else f"{case.get('record_bytes')} B {case.get('mode', '')}")
            figures = ", ".join(f"{metric} {spread_text(row['metrics'][metric], 2 if metric.endswith('_ms') else 1)}"
                                for metric in _SHOWN if metric in row["metrics"])
            lines.append(f"  {row['system']:<6} {row['client']:<26} {where:<18} {figures}")
    shares = ceiling_shares(doc)
    if shares:
        lines.append("\n== % of the ceiling (medians)")
        lines += [f"  {label:<60} {value:>9,.1f} MB/s = {share:4.0%} of {name}" for label, value, name, share in shares]
    if doc["resources"]:
        lines.append("\n== broker resources over the measured cases")
        for name, res in doc["resources"].items():
            lines.append(f"  {name:<14} peak RSS {res['peak_rss_mb']:,.0f} MB, CPU {res['cpu_s']:,.1f} s for "
                         f"{res['gb_moved']:,.2f} GB moved = {res['cpu_s_per_gb']:,.2f} CPU s/GB")
    lines.append("\n== goals (issue 24)")
    for goal in doc["ratios"]:
        verdict = "n/a" if goal["met"] is None else ("met" if goal["met"] else "NOT met")
        figures = "" if goal["ratio"] is None else f"{goal['edge']:,.2f} vs {goal['peer']:,.2f} = {goal['ratio']:.2f}x"
        lines.append(f"  {goal['what']:<66} {figures:<34} (goal {goal['goal']}) {verdict}")
    lines.append(f"\n{charts}")
    return "\n".join(lines)


def _tick(value: float, _position: object = None) -> str:
    """Axis labels: 100, 1k, 100k, 1 MiB, 8 MiB; counts as plain integers."""
    if value >= 1024 * 1024:
        return f"{value / (1024 * 1024):g} MiB"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def charts(doc: dict[str, Any], path: Path) -> str:
    """Throughput and p99 against record size, partitions and producers, one line per system."""
    rows = [row for row in doc["rows"] if row["section"] == "curve"]
    if not rows:
        return "charts: no curve figures in this run"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        return f"charts: not drawn, matplotlib missing ({exc}; the bench extra installs it)"
    axes_names = ("record_bytes", "partitions", "producers")
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    for column, axis in enumerate(axes_names):
        for system in sorted({row["system"] for row in rows}):
            points = sorted((row["case"]["x"], row["metrics"]) for row in rows
                            if row["case"]["axis"] == axis and row["system"] == system)
            if not points:
                continue
            xs = [x for x, _ in points]
            for line, metric in enumerate(("mb_s", "p99_ms")):
                ax = axes[line][column]
                medians = [m[metric]["median"] for _, m in points]
                low = [m[metric]["median"] - m[metric]["min"] for _, m in points]
                high = [m[metric]["max"] - m[metric]["median"] for _, m in points]
                ax.errorbar(xs, medians, yerr=[low, high], marker="o", capsize=3, label=system)
                ax.set_xscale("log", base=2 if axis != "record_bytes" else 10)
                ax.xaxis.set_major_formatter(FuncFormatter(_tick))
                ax.set_xlabel(axis.replace("_", " "))
                ax.set_ylabel("producer MB/s" if metric == "mb_s" else "producer p99 ms (send to ack)")
                ax.grid(True, alpha=0.3)
                ax.legend()
    quiet = "quiet machine" if doc["machine"]["quiet"] else "NOT quiet: noisy, machine shared"
    runs = "1 run per point" if doc.get("quick") else "median and min-max of the repetitions"
    figure.suptitle(f"kafka-producer-perf-test against each broker, {doc['started'][:16]} ({quiet}; {runs})")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return f"charts: {path}"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m benchmarks.run_report RESULTS.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 1
    print(render(doc, charts(doc, path.with_name(path.stem + "-curves.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
