"""One client connection to the broker: a ZeroMQ DEALER with request ids.

Guarantees:
- ``ZMQ_IMMEDIATE``: while the broker is down nothing is queued towards it; a send fails at
  once with BrokerUnavailableError, which is what lets producers apply back-pressure and
  drivers count drops instead of buffering without bound. ZeroMQ reconnects by itself
  (every 100 ms) when the broker comes back.
- ``request`` matches replies by request id and discards stale replies (from requests that
  timed out earlier); a reply with an error status raises the typed error the broker sent.
- ``call`` / ``send_request`` take a typed request (broker/protocol_messages.py) and ``call``
  returns its typed reply; ``request`` / ``send`` take a kind and a metadata dict as they are.
- ``watch_disconnects``: a monitor notes when the connection drops, so a caller awaiting a
  reply learns at once that it is lost (``take_disconnect``) instead of waiting out a timeout.
- Payload frames are sent and received without copies (``copy=False`` / memoryviews).
- tcp endpoints use CURVE when keys are given (``curve``, else ``$EDGE_CURVE_*``, see
  broker/curve.py); a refused handshake raises BrokerAuthError instead of "not reachable".

Not thread-safe (ZeroMQ sockets are not): one owner thread per Connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import zmq

from .. import protocol as P
from .. import protocol_messages as M
from ..curve import SERVER_KEY_ENV, ClientCurve
from ..errors import BrokerAuthError, BrokerUnavailableError, error_from_code

DEFAULT_TIMEOUT_S = 10.0
AUTH_FAILURE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                       | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class Reply:
    __slots__ = ("header", "meta", "payloads")

    def __init__(self, header: P.Header, meta: dict[str, Any], payloads: list[Any]):
        self.header = header
        self.meta = meta
        self.payloads = payloads

    def raise_for_error(self) -> None:
        if self.header.status:
            raise error_from_code(self.header.status, str(self.meta.get("message", "broker error")))


class Connection:
    def __init__(self, endpoint: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, context: zmq.Context[Any] | None = None,
                 curve: ClientCurve | None = None, watch_disconnects: bool = False):
        self.endpoint = endpoint
        self.watch_disconnects = watch_disconnects
        self._dropped = False
        self._auth_event: dict[str, Any] | None = None
        self.timeout_s = timeout_s
        self.context = context or zmq.Context.instance()
        self.curve = curve if curve is not None or not endpoint.startswith("tcp://") else ClientCurve.from_env()
        self._monitor: zmq.Socket[Any] | None = None
        self._ids = itertools.count(1)
        self.socket = self._open()

    def _open(self) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        events = zmq.EVENT_DISCONNECTED if self.watch_disconnects else 0
        if self.curve is not None:
            self.curve.apply(sock)
            events |= AUTH_FAILURE_EVENTS
        if events:
            self._monitor = sock.get_monitor_socket(events)
        sock.connect(self.endpoint)
        return sock

    def _drain_monitor(self) -> None:
        if self._monitor is None:
            return
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._dropped = True
            elif self._auth_event is None:
                self._auth_event = dict(event)

    def take_disconnect(self) -> bool:
        """True (once) when the connection dropped since the last call: replies to requests
        sent before are lost. Only with ``watch_disconnects``."""
        self._drain_monitor()
        dropped, self._dropped = self._dropped, False
        return dropped

    def _unreachable(self) -> BrokerUnavailableError:
        """The error for a send that found no connection: an auth refusal if the monitor saw one."""
        self._drain_monitor()
        if self._auth_event is not None:
            event, self._auth_event = self._auth_event, None
            what = getattr(event["event"], "name", event["event"])
            return BrokerAuthError(
                f"the broker at {self.endpoint} refused the CURVE handshake ({what}, status {int(event['value'])}): "
                f"is this client's public key in the broker's authorized directory, "
                f"and is ${SERVER_KEY_ENV} the broker's public key?")
        return BrokerUnavailableError(f"broker at {self.endpoint} is not reachable")

    def _close_socket(self) -> None:
        if self._monitor is not None:
            self.socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self.socket.close(linger=0)

    def reset(self) -> None:
        """Drop the socket (and any reply still on its way) and connect afresh."""
        self._close_socket()
        self._dropped = False  # the old connection's news
        self.socket = self._open()

    def send(self, kind: int, meta: dict[str, Any], payloads: Sequence[Any] = (), *, wait_s: float = 0.0) -> int:
        """Send a request; returns its id. Raises BrokerUnavailableError when not connected
        (after waiting up to ``wait_s`` for the connection to come up)."""
        request_id = next(self._ids)
        frames = [P.encode_header(kind, request_id), P.encode_metadata(meta), *payloads]
        if wait_s > 0 and not self.socket.poll(int(wait_s * 1000), zmq.POLLOUT):
            raise self._unreachable()
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise self._unreachable() from None
        return request_id

    def recv(self, timeout_s: float) -> Reply | None:
        """The next reply, or None when none arrives within ``timeout_s``."""
        if not self.socket.poll(max(0, int(timeout_s * 1000))):
            return None
        frames = self.socket.recv_multipart(copy=False)
        header = P.decode_header(frames[0].bytes)
        meta = P.decode_metadata(frames[1].bytes) if len(frames) > 1 else {}
        return Reply(header, meta, [f.buffer for f in frames[2:]])

    def request(self, kind: int, meta: dict[str, Any], payloads: Sequence[Any] = (), *,
                timeout_s: float | None = None) -> Reply:
        """Send and wait for the matching reply; raises the broker's typed error."""
        import time

        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        request_id = self.send(kind, meta, payloads, wait_s=min(timeout, 1.0))
        while True:
            remaining = deadline - time.monotonic()
            reply = self.recv(remaining) if remaining > 0 else None
            if reply is None:
                self.reset()  # a late reply must not be mistaken for the next request's
                raise BrokerUnavailableError(
                    f"no reply from the broker at {self.endpoint} within {timeout:.1f}s "
                    f"({P.REQUEST_TYPES.get(kind, kind)})"
                )
            if reply.header.request_id == request_id:
                reply.raise_for_error()
                return reply

    def send_request(self, request: M.Request[Any], payloads: tuple[Any, ...] | list[Any] = (), *,
                     wait_s: float = 0.0) -> int:
        """Send a typed request; returns its id (as ``send``)."""
        return self.send(request.KIND, request.to_meta(), payloads, wait_s=wait_s)

    def call(self, request: M.Request[M.ReplyT], payloads: tuple[Any, ...] | list[Any] = (), *,
             timeout_s: float | None = None) -> M.ReplyT:
        """Send a typed request and wait for its typed reply; raises the broker's typed error."""
        reply = self.request(request.KIND, request.to_meta(), payloads, timeout_s=timeout_s)
        return request.decode_reply(reply.meta)

    def close(self) -> None:
        self._close_socket()
