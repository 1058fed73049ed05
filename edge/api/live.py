"""Live updates over one WebSocket per client: status, new-record notices and frames.

Protocol on ``/api/live`` (token as for every API request: ``?token=`` from a browser):

- server → client, text (JSON):
  ``{"type": "hello", "status": {...}, "history": {...}}`` once, then
  ``{"type": "status", "status": {...}}`` after every status sample, and
  ``{"type": "records", "topics": {topic: {"next_offsets": [...], "records_per_s": r}}}``
  for the topics that received records since the last sample;
  ``{"type": "jobs", "jobs": [...]}`` when a job changes; ``{"type": "error", "message"}``
  for a bad client message.
- server → client, binary: a frame. ``u32 little-endian n``, then ``n`` bytes of JSON
  header ``{"type": "frame", "topic", "partition", "offset", "timestamp_ns", "mime",
  "width", "height"}``, then the image (JPEG for cameras, PNG bird's-eye for LiDAR).
- client → server, text (JSON): ``{"watch": ["camera.front", "lidar.top"], "fps": 5}``
  replaces the set of topics whose frames the client wants (at most 32) and, optionally,
  caps the frames per second per topic it receives (never above the server's
  ``frame_fps``).

Guarantees: a slow client never makes the server buffer without bound: each client holds
only the newest status, the newest notice per topic and the newest frame per topic, and
its sender sends whatever is newest when the socket drains (frames in between are
skipped, never queued). A client that sends garbage gets an error message, not a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .frames import Media

logger = logging.getLogger("edge.api.live")

MAX_WATCH = 32
MAX_CLIENT_MESSAGE = 64 * 1024


def frame_message(media: Media) -> bytes:
    header = json.dumps(media.header(), separators=(",", ":")).encode()
    return struct.pack("<I", len(header)) + header + media.data


class LiveClient:
    def __init__(self, hub: LiveHub, websocket: WebSocket):
        self.hub = hub
        self.websocket = websocket
        self.watch: dict[str, str] = {}
        self.status: str | None = None
        self.jobs: str | None = None
        self.notices: dict[str, dict[str, Any]] = {}
        self.frames: dict[str, bytes] = {}
        self.sent_at: dict[str, float] = {}
        self.min_interval = 0.0
        self.errors: list[str] = []
        self.wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def _pending(self) -> list[str | bytes]:
        out: list[str | bytes] = []
        for error in self.errors:
            out.append(json.dumps({"type": "error", "message": error}))
        self.errors = []
        if self.status is not None:
            out.append(self.status)
            self.status = None
        if self.jobs is not None:
            out.append(self.jobs)
            self.jobs = None
        if self.notices:
            out.append(json.dumps({"type": "records", "topics": self.notices}))
            self.notices = {}
        if self.frames:
            now = time.monotonic()
            due = {t: f for t, f in self.frames.items() if now - self.sent_at.get(t, 0.0) >= 0.8 * self.min_interval}
            for topic, frame in due.items():
                out.append(frame)
                self.sent_at[topic] = now
                del self.frames[topic]
            if self.frames and self._timer is None:
                # withheld by the client's fps cap: come back when the earliest is due
                wait = min(0.8 * self.min_interval - (now - self.sent_at.get(t, 0.0)) for t in self.frames)
                self._timer = asyncio.get_running_loop().call_later(max(wait, 0.001), self._timer_fired)
        return out

    def _timer_fired(self) -> None:
        self._timer = None
        self.wake.set()

    async def sender(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            for message in self._pending():
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message)

    async def receiver(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None or len(text) > MAX_CLIENT_MESSAGE:
                self._error("send JSON text messages like {\"watch\": [\"camera.front\"]}")
                continue
            try:
                body = json.loads(text)
            except ValueError:
                self._error("message is not JSON")
                continue
            if not isinstance(body, dict) or not isinstance(body.get("watch"), list):
                self._error("expected {\"watch\": [topic, ...]}")
                continue
            topics = [t for t in body["watch"] if isinstance(t, str)][:MAX_WATCH]
            fps = body.get("fps")
            if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
                self.min_interval = 1.0 / min(float(fps), 1000.0)
            self.watch = {t: k for t in topics if (k := self.hub.kind_of(t)) in ("camera", "lidar")}
            self.hub.update_watch()
            for topic in self.watch:
                cached = self.hub.last_frames.get(topic)
                if cached is not None:
                    self.frames[topic] = cached
            self.wake.set()

    def _error(self, message: str) -> None:
        self.errors.append(message)
        self.wake.set()


class LiveHub:
    """Fans the monitor's samples, record notices, job changes and frames out to clients."""

    def __init__(self, kind_of: Callable[[str], str], on_watch: Callable[[dict[str, str]], None]):
        self.kind_of = kind_of
        self.on_watch = on_watch
        self.clients: set[LiveClient] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_status: str | None = None
        self.last_jobs: str | None = None
        self.last_frames: dict[str, bytes] = {}
        self.hello: Callable[[], dict[str, Any]] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop closed meanwhile (shutdown)

    # -- from other threads --------------------------------------------------------------

    def publish_status(self, snapshot: dict[str, Any], changed: list[str]) -> None:
        text = json.dumps({"type": "status", "status": snapshot}, separators=(",", ":"), default=str)
        notices = {}
        for name in changed:
            topic = snapshot.get("topics", {}).get(name)
            if topic is not None:
                notices[name] = {"next_offsets": [p["next_offset"] for p in topic.get("partitions", [])],
                                 "records_per_s": topic.get("records_per_s")}
        self._call_soon(self._status, text, notices)

    def publish_media(self, media: Media) -> None:
        self._call_soon(self._media, media.topic, frame_message(media))

    def publish_jobs(self, jobs: list[dict[str, Any]]) -> None:
        text = json.dumps({"type": "jobs", "jobs": jobs}, separators=(",", ":"), default=str)
        self._call_soon(self._jobs, text)

    # -- on the event loop ---------------------------------------------------------------

    def _status(self, text: str, notices: dict[str, dict[str, Any]]) -> None:
        self.last_status = text
        for client in self.clients:
            client.status = text
            if notices:
                client.notices.update(notices)
            client.wake.set()

    def _media(self, topic: str, message: bytes) -> None:
        self.last_frames[topic] = message
        for client in self.clients:
            if topic in client.watch:
                client.frames[topic] = message
                client.wake.set()

    def _jobs(self, text: str) -> None:
        self.last_jobs = text
        for client in self.clients:
            client.jobs = text
            client.wake.set()

    def update_watch(self) -> None:
        union: dict[str, str] = {}
        for client in self.clients:
            union.update(client.watch)
        self.last_frames = {t: f for t, f in self.last_frames.items() if t in union}
        self.on_watch(union)

    async def serve(self, websocket: WebSocket) -> None:
        """Run one client until it disconnects."""
        if self.loop is None:
            self.bind(asyncio.get_running_loop())
        await websocket.accept()
        client = LiveClient(self, websocket)
        self.clients.add(client)
        try:
            hello: dict[str, Any] = {"type": "hello"}
            if self.hello is not None:
                hello.update(self.hello())
            await websocket.send_text(json.dumps(hello, separators=(",", ":"), default=str))
            if self.last_jobs is not None:
                client.jobs = self.last_jobs
                client.wake.set()
            tasks = [asyncio.create_task(client.sender()), asyncio.create_task(client.receiver())]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError, OSError)):
                    logger.warning("live client ended with %s", type(exc).__name__)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.clients.discard(client)
            if client._timer is not None:
                client._timer.cancel()
            self.update_watch()
