"""One export from a window of recorded topics to an MCAP file or a directory.

``plan_export`` does every check that can fail before anything is written (unknown
topics, offsets outside the log, an inverted window); ``export_window`` streams the
window (edge.replay.sources, merged by capture time) into the target; ``run_export`` is
the entry point of the HTTP API's export jobs (see edge.api.job_runners).

Guarantees:
- Streaming: records are read, written and dropped one at a time; memory does not grow
  with the window (see edge.replay.sources for the read-ahead bound and
  edge.export.directory for the video probe bound).
- Atomic output (edge.export.atomic): nothing appears under the final name until the
  export completed and was fsynced; an error, a cancel (``cancelled()`` true, or
  ``progress`` raising) or Ctrl-C removes the temporary and leaves the final name as it
  was. A window that yields nothing exportable publishes nothing (``ExportError``).
- Corrupt records (headers, lengths or images that do not decode) are skipped, counted
  per topic in ``corrupt`` and reported through ``warn`` (the first few per topic);
  records that are neither camera frames nor point clouds (or clouds in an ``mp4``-only
  export) are skipped and counted per topic in ``skipped``. Neither stops the export.
- ``progress(fraction, message)`` is called at most every ``PROGRESS_INTERVAL_S`` and
  once with 1.0 at the end; the fraction is records read over the window's offset range
  (``count_window``), capped below 1 until done.
- Records of the window that were no longer in the log (retention, before or during the
  export) are reported, never skipped in silence: ``missing`` (count and offset ranges) in
  the result, the directory manifest and the MCAP ``edge.export`` metadata. The export is
  still published (what was there is good); ``edge export`` exits non-zero unless
  ``--allow-gaps``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.records import Record
from edge.replay.keyframes import start_at_keyframes
from edge.replay.missing import MissingRecords
from edge.replay.sources import (
    DEFAULT_READ_AHEAD_BYTES,
    RecordSource,
    TopicPartition,
    open_source,
    open_window,
    resolve_window,
    select_partitions,
)
from edge.replay.timespec import Window, WindowSpec, format_ns

from .atomic import AtomicOutput, fsync_path
from .errors import ExportCancelled, ExportError
from .kinds import CAMERA, POINTCLOUD, record_kind

logger = logging.getLogger("edge.export")

FORMATS = ("mcap", "dir")
API_FORMATS = ("mcap", "mp4", "pcd", "ply")
PROGRESS_INTERVAL_S = 0.25
WARNINGS_PER_TOPIC = 3
API_MCAP_NAME = "export.mcap"

Progress = Callable[..., None]


@dataclass
class ExportPlan:
    partitions: list[TopicPartition]
    window: Window
    expected: int
    keyframes: dict[str, Any] | None = None  # video partitions moved back to their keyframe (edge.replay.keyframes)


def plan_export(source: RecordSource, patterns: Sequence[str], spec: WindowSpec) -> ExportPlan:
    """Choose partitions and resolve the window; nothing is written."""
    chosen = [p for p in patterns if p.strip()] or list(spec.drive_topics)
    if not chosen:
        raise ExportError("no topics chosen (give --topics, e.g. camera.front,lidar.top or 'camera.*')")
    partitions = select_partitions(source, chosen)
    keyframes = start_at_keyframes(source, partitions, resolve_window(source, spec, partitions))
    window = keyframes.window
    expected = sum(source.count_window(tp, window) for tp in partitions)
    return ExportPlan(partitions, window, expected, keyframes.to_json())


def infer_format(out: Path | str, explicit: str | None = None) -> str:
    """``mcap`` for a ``.mcap`` path, else ``dir``; an explicit format wins."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise ExportError(f"unknown export format {explicit!r} (choose {' or '.join(FORMATS)})")
        return explicit
    return "mcap" if str(out).lower().endswith(".mcap") else "dir"


class _Counts:
    def __init__(self, progress: Progress | None, expected: int | None, warn: Callable[[str], None]):
        self.progress = progress
        self.expected = expected or 0
        self.warn = warn
        self.records = 0
        self.bytes = 0
        self.written = 0
        self.skipped: dict[str, int] = {}
        self.corrupt: dict[str, int] = {}
        self.missing = MissingRecords()
        self.started = time.monotonic()
        self._last_report = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def message(self) -> str:
        mb = self.bytes / 1e6
        rate = mb / max(self.elapsed(), 1e-6)
        of = f"/{self.expected}" if self.expected else ""
        return f"{self.records}{of} records, {mb:.1f} MB, {rate:.1f} MB/s"

    def report(self, *, final: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not final and now - self._last_report < PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        if final:
            fraction: float | None = 1.0
        else:
            fraction = min(0.99, self.records / self.expected) if self.expected else None
        self.progress(fraction, self.message())

    def corrupted(self, topic: str, offset: int, reason: str) -> None:
        seen = self.corrupt.get(topic, 0)
        self.corrupt[topic] = seen + 1
        if seen < WARNINGS_PER_TOPIC:
            self.warn(f"skipping corrupt record {topic}:{offset}: {reason}")
        elif seen == WARNINGS_PER_TOPIC:
            self.warn(f"further corrupt records of {topic} are skipped and counted, not shown")


def _window_json(window: Window) -> dict[str, Any]:
    return {"start_ns": window.start_ns, "end_ns": window.end_ns, "start": format_ns(window.start_ns),
            "end": format_ns(window.end_ns), "drive": window.drive}


def export_window(source: RecordSource, partitions: Sequence[TopicPartition], window: Window, out: Path | str,
                  fmt: str, *, cloud_format: str = "pcd", kinds: Sequence[str] = (CAMERA, POINTCLOUD),
                  overwrite: bool = False, expected: int | None = None, progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None, warn: Callable[[str], None] | None = None,
                  read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES) -> dict[str, Any]:
    """Export ``partitions`` over ``window`` to ``out`` (``fmt`` "mcap" or "dir"); returns counts."""
    fmt = infer_format(out, fmt)
    counts = _Counts(progress, expected, warn or logger.warning)
    out_path = Path(out)
    with AtomicOutput(out_path, is_dir=(fmt == "dir"), overwrite=overwrite) as output:
        if fmt == "mcap":
            topics = _export_mcap(source, partitions, window, output.temp, kinds, counts, cancelled,
                                  read_ahead_bytes)
        else:
            topics = _export_dir(source, partitions, window, output.temp, kinds, cloud_format, counts, cancelled,
                                 read_ahead_bytes)
        if counts.written == 0:
            names = ", ".join(sorted({tp[0] for tp in partitions}))
            span = f"{format_ns(window.start_ns)} .. {format_ns(window.end_ns)}"
            if counts.records == 0 and counts.missing:
                raise ExportError(f"the window {span} of {names}: {counts.missing.describe()}: nothing exported")
            if counts.records == 0:
                raise ExportError(f"the window {span} holds no records of {names}: nothing exported (a window is "
                                  "the offsets from the first record stamped at or after its start to the first "
                                  "at or after its end; records a clock stamped back into it come later)")
            raise ExportError(f"none of the {counts.records} records of {names} in {span} could be exported "
                              f"(skipped: {counts.skipped or 0}, corrupt: {counts.corrupt or 0})")
        final = output.commit()
    counts.report(final=True)
    size = (final.stat().st_size if fmt == "mcap"
            else sum(p.stat().st_size for p in final.rglob("*") if p.is_file()))
    return {"format": fmt, "path": str(final), "records": counts.records, "written": counts.written,
            "bytes_read": counts.bytes, "output_bytes": size, "skipped": counts.skipped, "corrupt": counts.corrupt,
            "topics": topics, "window": _window_json(window), "missing": counts.missing.to_json(),
            "elapsed_s": round(counts.elapsed(), 3)}


def _records(source: RecordSource, partitions: Sequence[TopicPartition], window: Window, counts: _Counts,
             cancelled: Callable[[], bool] | None, read_ahead_bytes: int) -> Iterator[Record]:
    """The window's records, with counting, progress and the cancel check."""
    with open_window(source, partitions, window, read_ahead_bytes=read_ahead_bytes, missing=counts.missing) as stream:
        for record in stream:
            if cancelled is not None and cancelled():
                raise ExportCancelled()
            counts.records += 1
            counts.bytes += memoryview(record.value).nbytes
            yield record
            counts.report()
    if cancelled is not None and cancelled():
        raise ExportCancelled()


def _write_all(target: Any, source: RecordSource, partitions: Sequence[TopicPartition], window: Window,
               kinds: Sequence[str], counts: _Counts, cancelled: Callable[[], bool] | None,
               read_ahead_bytes: int) -> None:
    for record in _records(source, partitions, window, counts, cancelled, read_ahead_bytes):
        kind = record_kind(record)
        if kind not in kinds:
            counts.skipped[record.topic] = counts.skipped.get(record.topic, 0) + 1
            continue
        try:
            target.write(record, kind)
        except ValueError as exc:
            counts.corrupted(record.topic, record.offset, str(exc))
            continue
        counts.written += 1


def _export_mcap(source: RecordSource, partitions: Sequence[TopicPartition], window: Window, temp: Path,
                 kinds: Sequence[str], counts: _Counts, cancelled: Callable[[], bool] | None,
                 read_ahead_bytes: int) -> dict[str, Any]:
    from .mcap_file import McapFileWriter, require_mcap

    require_mcap()
    metadata = {"source": source.description, "topics": ",".join(sorted({tp[0] for tp in partitions})),
                "start_ns": str(window.start_ns), "end_ns": str(window.end_ns), "drive": window.drive or ""}
    with open(temp, "wb") as stream:
        writer = McapFileWriter(stream, metadata=metadata)
        _write_all(writer, source, partitions, window, kinds, counts, cancelled, read_ahead_bytes)
        writer.set_metadata("missing_records", json.dumps(counts.missing.to_json()))
        writer.finish()
    return {topic: {"messages": n, "schema": writer.schemas_used.get(topic)}
            for topic, n in sorted(writer.messages.items())}


def _export_dir(source: RecordSource, partitions: Sequence[TopicPartition], window: Window, temp: Path,
                kinds: Sequence[str], cloud_format: str, counts: _Counts, cancelled: Callable[[], bool] | None,
                read_ahead_bytes: int) -> dict[str, Any]:
    from .directory import DirectoryWriter

    writer = DirectoryWriter(temp, cloud_format=cloud_format, warn=counts.warn)
    try:
        _write_all(writer, source, partitions, window, kinds, counts, cancelled, read_ahead_bytes)
        topics = writer.finish()
    finally:
        writer.close()
    manifest = {"format": "dir", "cloud_format": cloud_format, "source": source.description,
                "window": _window_json(window), "records": counts.records, "written": counts.written,
                "skipped": counts.skipped, "corrupt": counts.corrupt, "missing": counts.missing.to_json(),
                "topics": topics, "created_ns": time.time_ns()}
    with open(temp / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    return topics


# -- the API's jobs ----------------------------------------------------------------------------


def flatten_for_download(tree: Path, out_dir: Path) -> list[str]:
    """Move the files at the top of ``tree`` into ``out_dir`` and zip each folder of
    ``tree`` into ``out_dir/<folder>.zip`` (atomically, MP4s stored, the rest deflated);
    removes ``tree``. Returns the names published, manifest.json last."""
    published: list[str] = []
    entries = sorted(tree.iterdir(), key=lambda p: (p.name == "manifest.json", p.name))
    for entry in entries:
        if entry.is_dir():
            name = f"{entry.name}.zip"
            with AtomicOutput(out_dir / name, is_dir=False, overwrite=True) as output:
                with zipfile.ZipFile(output.temp, "w", allowZip64=True) as archive:
                    for path in sorted(entry.rglob("*")):
                        if path.is_file():
                            method = zipfile.ZIP_STORED if path.suffix == ".mp4" else zipfile.ZIP_DEFLATED
                            archive.write(path, path.relative_to(tree).as_posix(), compress_type=method)
                output.commit()
            shutil.rmtree(entry)
            published.append(name)
        else:
            os.replace(entry, out_dir / entry.name)
            published.append(entry.name)
    shutil.rmtree(tree, ignore_errors=True)
    return published


def run_export(endpoint: str, topics: Sequence[str], start_ns: int, end_ns: int, format: str = "mcap",
               out_dir: Path | str = ".", progress: Progress | None = None,
               cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Export ``topics`` (names or patterns) of the broker at ``endpoint`` over
    ``[start_ns, end_ns)`` into the existing directory ``out_dir``.

    ``format``: "mcap" writes ``out_dir/export.mcap``; "mp4" (camera topics only), "pcd"
    and "ply" (cameras as MP4, clouds as PCD/PLY) do the directory export, then keep its
    top-level files (MP4s, frames CSVs, manifest.json) at the top of ``out_dir`` and put
    each cloud folder in ``<topic>.zip``, so every result is one downloadable file.
    Returns the counts; a cancel returns ``{"cancelled": True, ...}`` with nothing left."""
    if format not in API_FORMATS:
        raise ExportError(f"unknown export format {format!r} (choose {', '.join(API_FORMATS)})")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    source = open_source(endpoint=endpoint)
    try:
        plan = plan_export(source, list(topics), WindowSpec(int(start_ns), int(end_ns)))
        options: dict[str, Any] = {"expected": plan.expected, "progress": progress, "cancelled": cancelled,
                                   "overwrite": True}
        try:
            if format == "mcap":
                result = export_window(source, plan.partitions, plan.window, out_dir / API_MCAP_NAME, "mcap",
                                       **options)
                result["outputs"] = [API_MCAP_NAME]
            else:
                kinds = (CAMERA,) if format == "mp4" else (CAMERA, POINTCLOUD)
                cloud_format = "pcd" if format == "mp4" else format
                tree = out_dir / f".export-{os.getpid()}"
                result = export_window(source, plan.partitions, plan.window, tree, "dir", kinds=kinds,
                                       cloud_format=cloud_format, **options)
                result["outputs"] = flatten_for_download(tree, out_dir)
                fsync_path(out_dir)
        except ExportCancelled as exc:
            return {"cancelled": True, "message": exc.message}
        result["format"] = format
        result["keyframes"] = plan.keyframes
        result.pop("path", None)
        return result
    finally:
        source.close()
