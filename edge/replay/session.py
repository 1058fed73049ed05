"""One replay from arguments to a running player: source, selection, window, sink.

``prepare_replay`` does every check that can fail before a record is published (unknown
topics, an empty window, a feedback loop, destination partitions) and returns a
``ReplaySession`` whose ``player`` is ready to ``run``. ``run_replay`` is the entry point
the HTTP API's jobs call (see edge.api.job_runners): it plays a window once, reporting
progress and honouring cancels. ``session.missing`` collects the window's records that
were no longer in the log when the player reached them (reported in the summary).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ReplayError
from .keyframes import KeyframeStarts, start_at_keyframes
from .merge import MergedStream
from .missing import MissingRecords
from .player import Player, ReplayOptions, ReplayStatus, check_speed
from .sinks import BrokerSink, TopicNaming
from .sources import BrokerSource, RecordSource, TopicPartition, open_window, resolve_window, select_partitions
from .timespec import Window, WindowSpec


@dataclass
class ReplaySession:
    source: RecordSource
    sink: BrokerSink
    partitions: list[TopicPartition]
    window: Window
    destinations: dict[str, str]
    player: Player
    expected_records: int
    missing: MissingRecords  # records of the window no longer in the log, as the player met them
    keyframes: KeyframeStarts | None = None  # video partitions moved back to their keyframe (edge.replay.keyframes)

    def close(self) -> None:
        try:
            self.sink.close()
        finally:
            self.source.close()


def data_span(source: RecordSource, partitions: Sequence[TopicPartition], window: Window) -> tuple[int, int]:
    """Capture times of the first and last record in ``window`` over ``partitions`` (the
    window's own bounds where the source cannot tell), so progress is a true percentage
    even for ``--start earliest --end now``."""
    if not isinstance(source, BrokerSource):
        return window.start_ns, window.end_ns
    firsts, lasts = [], []
    for tp in partitions:
        first, stop = source.offset_range(tp, window)
        if stop <= first:
            continue
        ts_first = source.timestamp_at(tp, first)
        ts_last = source.timestamp_at(tp, stop - 1)
        if ts_first is not None:
            firsts.append(ts_first)
        if ts_last is not None:
            lasts.append(ts_last)
    if not firsts or not lasts:
        return window.start_ns, window.end_ns
    return max(window.start_ns, min(firsts)), min(window.end_ns, max(lasts))


def prepare_replay(source: RecordSource, patterns: Sequence[str], spec: WindowSpec, *, endpoint: str,
                   naming: TopicNaming, options: ReplayOptions | None = None,
                   on_progress: Callable[[ReplayStatus], None] | None = None,
                   on_emit: Callable[..., None] | None = None,
                   read_ahead_bytes: int = 2 * 1024 * 1024) -> ReplaySession:
    """Check everything and build the player; the caller runs ``session.player.run()``
    and closes the session."""
    options = options or ReplayOptions()
    options.speed = check_speed(options.speed)  # before anything is created at the destination
    exclude = [naming.prefix] if naming.prefix else []
    chosen = patterns or list(spec.drive_topics)
    partitions = select_partitions(source, chosen, exclude_prefixes=exclude)
    keyframes = start_at_keyframes(source, partitions, resolve_window(source, spec, partitions))
    window = keyframes.window
    counts: dict[str, int] = {}
    for topic, _p in partitions:
        counts[topic] = source.topics()[topic]
    configs = {topic: source.topic_config(topic) for topic in counts}
    expected = sum(source.count_window(tp, window) for tp in partitions)
    span = data_span(source, partitions, window)
    sink = BrokerSink(endpoint, naming)
    try:
        same = isinstance(source, BrokerSource) and source.endpoint == endpoint
        destinations = sink.prepare(counts, configs, same_broker=same)

        missing = MissingRecords()

        def open_stream(window: Window) -> MergedStream:  # named as StreamFactory names it
            return open_window(source, partitions, window, read_ahead_bytes=read_ahead_bytes, missing=missing)

        player = Player(open_stream, window, sink, options, span=span, on_progress=on_progress, on_emit=on_emit)
    except BaseException:
        sink.close()
        raise
    return ReplaySession(source, sink, partitions, window, destinations, player, expected, missing, keyframes)


def run_replay(endpoint: str, topics: Sequence[str], start_ns: int, end_ns: int, speed: float | None = 1.0,
               prefix: str = "replay.", loop: bool = False, progress: Callable[..., None] | None = None,
               cancelled: Callable[[], bool] | None = None, remap: Mapping[str, str] | None = None,
               source_endpoint: str | None = None) -> dict[str, Any]:
    """Replay ``topics`` of the broker at ``source_endpoint`` (default: ``endpoint``) over
    ``[start_ns, end_ns)`` into ``endpoint`` under ``prefix``; blocks until the window was
    played (forever with ``loop``, until ``cancelled()``). Returns the final status."""
    if not prefix and not remap:
        raise ReplayError("a replay into the broker it reads needs a prefix or a remap")
    source = BrokerSource(source_endpoint or endpoint)
    spec = WindowSpec(int(start_ns), int(end_ns))

    def report(status: ReplayStatus) -> None:
        if progress is not None:
            progress(status.fraction, f"{status.state} {status.records} records")

    session = prepare_replay(source, list(topics), spec, endpoint=endpoint, naming=TopicNaming(prefix, remap),
                             options=ReplayOptions(speed=speed, loop=loop), on_progress=report)
    done = threading.Event()

    def watch_cancel() -> None:
        while not done.wait(0.2):
            if cancelled is not None and cancelled():
                session.player.stop()
                return

    watcher = threading.Thread(target=watch_cancel, name="edge-replay-cancel", daemon=True)
    watcher.start()
    try:
        status = session.player.run()
    finally:
        done.set()
        watcher.join(1.0)
        session.close()
    result = status.to_json()
    result["destinations"] = session.destinations
    result["missing"] = session.missing.to_json()
    if session.keyframes is not None:
        result["keyframes"] = session.keyframes.to_json()
    return result
