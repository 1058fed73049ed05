"""Starting and running the broker process: ``run_broker`` (the command line is edge/commands/broker.py).

Guarantees:
- Refuses to start (exit code 2, one ``broker_refused`` / ``bind_failed`` log line naming
  the reason) rather than serve insecurely or twice: a non-loopback tcp endpoint needs CURVE
  keys or ``allow_insecure_tcp``; one broker per data directory (a lock held until exit); a
  Kafka listener that cannot start where the config named it stops the start too.
- Raises the soft fd limit to the hard one (every partition holds files open).
- SIGTERM/SIGINT stop the loop; the broker then flushes, answers what waits and closes the
  storage cleanly (BrokerServer.shutdown). Ready and watchdog go to systemd (sd_notify).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from .background import REPEATED_LOG_INTERVAL_S
from .curve import CurveError, ServerCurve, is_loopback_tcp
from .logs import RateLimitFilter, log_event
from .server import BrokerServer, logger
from .storage import DiskGuard, Storage
from .storage.dir_lock import lock_broker_data_dir
from .topic_config import TopicConfig


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_broker(data_dir: Path, endpoint: str | None, *, defaults: TopicConfig | None = None,
               disk_guard: DiskGuard | None = None, auto_create_topics: bool = True,
               topic_config_for: Callable[[str], TopicConfig] | None = None,
               curve: tuple[Path, Path] | None = None, allow_insecure_tcp: bool = False,
               mirror_topics: Callable[[str], bool] | None = None, kafka: dict[str, Any] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``curve``: (server .key_secret file, authorized-clients
    directory); ``kafka``: keyword arguments of ``start_kafka_listener`` (listen, advertised,
    insecure) plus ``required`` (False: a busy default port is logged and skipped).
    Returns the exit code (2: cannot start, with the reason logged)."""
    from .base import sdnotify  # small, no heavy imports

    _raise_fd_limit()
    # conditions that last (a full disk the guard cannot clear) log once a minute, with counts
    logging.getLogger("broker.retention").addFilter(RateLimitFilter(("disk_guard_stuck",), REPEATED_LOG_INTERVAL_S))
    started = time.perf_counter()
    endpoint = endpoint or f"ipc://{Path(data_dir).resolve()}/broker.sock"
    server_curve = None
    if endpoint.startswith("tcp://"):
        try:
            server_curve = ServerCurve(*curve) if curve is not None else None
        except CurveError as exc:
            log_event(logger, logging.ERROR, "broker_refused", reason=exc.message)
            return 2
        if server_curve is None and not allow_insecure_tcp and not is_loopback_tcp(endpoint):
            log_event(logger, logging.ERROR, "broker_refused",
                      reason=f"{endpoint} is reachable from other hosts: configure [broker.curve] (keys from "
                             "`edge keys`) or set allow_insecure_tcp = true")
            return 2
    if not lock_broker_data_dir(data_dir, logger):  # one broker per data directory, held until exit
        return 2
    storage = Storage(data_dir, defaults=defaults, disk_guard=disk_guard)
    server = BrokerServer(storage, endpoint, auto_create_topics=auto_create_topics, topic_config_for=topic_config_for,
                          curve=server_curve, mirror_topics=mirror_topics)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    try:
        server.bind()
    except zmq.ZMQError as exc:
        storage.close()
        log_event(logger, logging.ERROR, "bind_failed", endpoint=endpoint, error=exc)
        return 2
    if kafka and not _start_kafka(server, dict(kafka)):
        server.shutdown()
        return 2
    log_event(logger, logging.INFO, "broker_ready", seconds=f"{time.perf_counter() - started:.3f}",
              heap_trim="every 1s" if server.heap.available else "unavailable")
    sdnotify.ready(f"serving {endpoint}")
    watchdog = sdnotify.Watchdog(alive=lambda: time.monotonic() - server.last_loop < 10).start()
    try:
        server.serve_forever()
    finally:
        watchdog.stop()
        sdnotify.stopping()
    return 0


def _start_kafka(server: BrokerServer, kafka: dict[str, Any]) -> bool:
    from .kafka.listener import start_kafka_listener

    required = kafka.pop("required", True)
    try:
        start_kafka_listener(server, **kafka)
    except ValueError as exc:
        log_event(logger, logging.ERROR, "broker_refused", reason=str(exc))
        return False
    except OSError as exc:
        log_event(logger, logging.ERROR if required else logging.WARNING, "kafka_bind_failed",
                  address=kafka["listen"], error=exc,
                  effect="not starting" if required else "serving without the Kafka listener")
        return not required
    return True


