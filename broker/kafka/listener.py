"""The Kafka protocol listener: plain TCP sockets served from the broker's one event loop.

Why in the loop, not in a thread: the storage engine and both group coordinators are owned
by the BrokerServer loop and are not thread-safe. The loop already polls its ZeroMQ ROUTER
with ``zmq.Poller``, which polls plain file descriptors too, so the listening socket and
every client connection are registered in the same poller (non-blocking sockets). Nothing
is shared across threads, so nothing can race, and no lock sits on the produce path.
No client can block the loop: reads and writes are non-blocking, a connection is read only
while its output is drained and its previous request answered (Kafka's ordering rule: one
request in flight per connection is handled at a time, answers in request order), and
parked answers (JoinGroup, SyncGroup) are callbacks, not waits.

Framing: ``int32 size`` + body. A size below 8 or above ``max_request_bytes`` (Kafka's
socket.request.max.bytes) closes the connection with one log line and a counter, as
Kafka does; so does a body kio cannot decode. An unknown API or version gets Kafka's
UNSUPPORTED_VERSION answer; only when no schema for it exists at all (so no answer can be
encoded) is the connection closed, again with a log line.
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import ssl
import struct
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from ..logs import log_event
from . import codec
from .address import is_loopback_host, parse_host_port
from .apis import API_VERSIONS, APIS, SUPPORTED, api_versions_values
from .broker import KafkaBroker
from .errors import NONE, UNKNOWN_SERVER_ERROR, UNSUPPORTED_VERSION
from .fetch_encode import FetchResponseValues, encode_fetch_response
from .security import KafkaSecurity, SaslFailed, SaslSession

if TYPE_CHECKING:
    from ..server import BrokerServer

logger = logging.getLogger("broker.kafka")

RECV_CHUNK = 1024 * 1024
SENDMSG_PARTS = 64
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
SASL_EXEMPT = {API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE}
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
MAX_PENDING_OUTPUT = 64 * 1024 * 1024  # stop reading a client whose answers pile up unread
_SIZE = struct.Struct(">i")


@dataclass
class Call:
    """One request being answered; ``respond`` may be called later (parked answers)."""

    connection: Connection
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: codec.RequestBody
    answered: bool = False

    @property
    def client_host(self) -> str:
        return self.connection.peer[0] if self.connection.peer else ""

    def respond(self, values: codec.ResponseValues) -> None:
        if self.answered:
            return
        self.answered = True
        self.connection.listener.answer(self, values)

    def respond_fetch(self, values: FetchResponseValues) -> None:
        """A Fetch answer: its record bytes go out as the views the log returned."""
        if self.answered:
            return
        self.answered = True
        self.connection.listener.answer_fetch(self, values)

    def respond_nothing(self) -> None:
        """Produce with acks 0: Kafka sends no answer at all."""
        self.answered = True
        self.connection.listener.answered_silently(self)


@dataclass
class Connection:
    listener: KafkaListener
    sock: socket.socket  # an ssl.SSLSocket with TLS
    peer: tuple[str, int] | tuple[str, int, int, int]  # (host, port), IPv6 with flow info and scope
    inbuf: bytearray = field(default_factory=bytearray)
    outq: deque[memoryview] = field(default_factory=deque)
    out_bytes: int = 0
    waiting: Call | None = None  # a parked request; later requests wait behind it
    closed: bool = False
    registered: int = 0
    handshaking: bool = False  # TLS handshake under way
    tls_wants_write: bool = False
    authenticated: bool = True  # False until SASL succeeds, when SASL is required
    sasl: SaslSession | None = None  # the mechanism SaslHandshake chose, an exchange under way

    @property
    def fd(self) -> int:
        return self.sock.fileno()


class KafkaListener:
    def __init__(self, broker: KafkaBroker, host: str, port: int, security: KafkaSecurity | None = None):
        self.broker = broker
        self.host, self.port = host, port
        self.security = security or KafkaSecurity(None, None)
        self.sock: socket.socket | None = None
        self.poller: zmq.Poller | None = None
        self.connections: dict[int, Connection] = {}
        self.stats: Counter[str] = Counter()
        # connections whose parked request was answered: read on once the current event is
        # handled (never from inside a coordinator callback, which may be mid-iteration)
        self._resumed: list[Connection] = []

    # -- lifecycle (called by BrokerServer) ------------------------------------------------

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]  # port 0: the one the OS chose
        log_event(logger, logging.INFO, "kafka_listening", address=f"{self.host}:{self.port}",
                  advertised=f"{self.broker.advertised_host}:{self.broker.advertised_port}",
                  tls="on" if self.security.tls else "off",
                  sasl=f"{'/'.join(self.security.mechanisms)}, {len(self.security.users)} users"
                  if self.security.users else "off")

    def attach(self, poller: zmq.Poller) -> None:
        if self.sock is None:
            raise RuntimeError("KafkaListener.attach() before bind()")
        self.poller = poller
        poller.register(self.sock.fileno(), zmq.POLLIN)

    def _registered_poller(self) -> zmq.Poller:
        """The loop's poller; connections exist only once the listener is attached to it."""
        if self.poller is None:
            raise RuntimeError("KafkaListener used before attach()")
        return self.poller

    def next_timeout_s(self) -> float | None:
        deadlines = [d for d in (self.broker.kafka_groups.next_deadline(), self.broker.next_fetch_deadline())
                     if d is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def run_timers(self, now: float) -> None:
        self.broker.kafka_groups.run_timers(now)
        if self.broker.parked_fetches:
            self.broker.wake_fetches("", None, now)
        self._resume()

    def on_append(self, topic: str, partition: int) -> None:
        """A batch was written (either protocol): parked Kafka fetches on it answer now."""
        if self.broker.parked_fetches:
            self.broker.wake_fetches(topic, partition)

    def _resume(self) -> None:
        while self._resumed:
            conn = self._resumed.pop()
            if not conn.closed:
                self._process(conn)
            if not conn.closed:
                self._update_interest(conn)

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self._close(conn, None)
        if self.sock is not None:
            if self.poller is not None:
                self.poller.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def stats_fields(self) -> dict[str, dict[str, object]]:
        """Counters for the native Metadata reply (``edge status``, /metrics)."""
        return {"kafka": {"listen": f"{self.host}:{self.port}", **self.stats,
                          "connections_open": len(self.connections)}}

    # -- events ---------------------------------------------------------------------------

    def on_ready(self, fd: int, flags: int) -> None:
        if self.sock is not None and fd == self.sock.fileno():
            self._accept()
            return
        conn = self.connections.get(fd)
        if conn is None:
            return
        if conn.handshaking:
            self._handshake(conn)
            if conn.handshaking or conn.closed:
                if not conn.closed:
                    self._update_interest(conn)
                return
        if flags & zmq.POLLOUT:
            self._write(conn)
        if flags & zmq.POLLIN and not conn.closed:
            self._read(conn)
        if flags & zmq.POLLERR and not conn.closed:
            self._close(conn, None)
        if not conn.closed:
            self._update_interest(conn)
        self._resume()

    def _accept(self) -> None:
        if self.sock is None:
            return
        for _ in range(64):
            try:
                client, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving the rest
                log_event(logger, logging.ERROR, "kafka_accept_failed", error=exc)
                self.stats["accept_errors"] += 1
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.security.tls is not None:
                client = self.security.tls.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
            conn = Connection(self, client, peer, handshaking=self.security.tls is not None,
                              authenticated=self.security.users is None)
            self.connections[conn.fd] = conn
            self.stats["connections_accepted"] += 1
            self._update_interest(conn)

    def _update_interest(self, conn: Connection) -> None:
        flags = 0
        if conn.handshaking:
            flags = zmq.POLLOUT if conn.tls_wants_write else zmq.POLLIN
        elif conn.waiting is None and conn.out_bytes < MAX_PENDING_OUTPUT:
            flags |= zmq.POLLIN
        if conn.outq and not conn.handshaking:
            flags |= zmq.POLLOUT
        if flags != conn.registered:
            if flags:
                self._registered_poller().register(conn.fd, flags)
            else:
                self._registered_poller().unregister(conn.fd)
            conn.registered = flags

    def _close(self, conn: Connection, reason: str | None, **fields: object) -> None:
        if conn.closed:
            return
        conn.closed = True
        if reason is not None:
            self.stats[f"closed_{reason}"] += 1
            log_event(logger, logging.WARNING, "kafka_connection_closed", peer=_peer(conn), reason=reason, **fields)
        if conn.registered:
            self._registered_poller().unregister(conn.fd)
        self.connections.pop(conn.fd, None)
        # parked group answers for this connection are dropped by Call.respond; the member
        # itself leaves by LeaveGroup or session expiry, as in Kafka
        conn.sock.close()

    # -- reading and dispatch ---------------------------------------------------------------

    def _handshake(self, conn: Connection) -> None:
        if not isinstance(conn.sock, ssl.SSLSocket):  # only TLS connections start handshaking
            conn.handshaking = False
            return
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.tls_wants_write = False
            return
        except ssl.SSLWantWriteError:
            conn.tls_wants_write = True
            return
        except (ssl.SSLError, OSError) as exc:
            self._close(conn, "tls_handshake", error=exc)
            return
        conn.handshaking = False

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_CHUNK)
            while isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                data += conn.sock.recv(conn.sock.pending())  # decrypted bytes the poller cannot see
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            self._close(conn, "socket_error", error=exc)
            return
        if not data:
            self._close(conn, None)
            return
        conn.inbuf += data
        self._process(conn)

    def _process(self, conn: Connection) -> None:
        buf = conn.inbuf
        start = 0
        while conn.waiting is None and not conn.closed and len(buf) - start >= 4:
            (size,) = _SIZE.unpack_from(buf, start)
            if size < 8 or size > self.broker.max_request_bytes:
                self._close(conn, "bad_frame_size", size=size, limit=self.broker.max_request_bytes)
                return
            if len(buf) - start - 4 < size:
                break
            with memoryview(buf) as view:  # one copy of the frame, not two
                frame = bytes(view[start + 4:start + 4 + size])
            start += 4 + size
            self._dispatch(conn, frame)
        if start:
            del buf[:start]

    def _dispatch(self, conn: Connection, frame: bytes) -> None:
        self.stats["requests"] += 1
        try:
            request = codec.parse_request(frame, SUPPORTED)
        except codec.UnsupportedRequest as exc:
            self._unsupported(conn, exc)
            return
        except codec.KafkaFrameError as exc:
            self._close(conn, "malformed_request", error=str(exc), size=len(frame))
            return
        call = Call(conn, request.api_key, request.api_version, request.correlation_id, request.client_id,
                    request.body)
        api = APIS[request.api_key]
        if not conn.authenticated and request.api_key not in SASL_EXEMPT:
            self._close(conn, "unauthenticated", api=api.name)
            return
        try:
            if request.api_key == SASL_HANDSHAKE:
                call.respond(self._sasl_handshake(conn, request.body))
            elif request.api_key == SASL_AUTHENTICATE:
                call.respond(self._sasl_authenticate(conn, request.body))
            elif api.answer_later is not None:
                conn.waiting = call
                api.answer_later(self.broker, call)
            elif api.answer is None:  # ApiVersions
                call.respond(api_versions_values())
            else:
                call.respond(api.answer(self.broker, request.body, request.api_version))
        except Exception as exc:  # one bad request must not stop the loop
            self.stats["handler_errors"] += 1
            log_event(logger, logging.ERROR, "kafka_request_failed", api=api.name, version=request.api_version,
                      peer=_peer(conn), error=repr(exc))
            call.answered = False
            self._answer_error(call, UNKNOWN_SERVER_ERROR)

    def _sasl_handshake(self, conn: Connection, body: codec.RequestBody) -> codec.ResponseValues:
        offered = self.security.mechanisms
        if body.mechanism not in offered:
            return {"error_code": UNSUPPORTED_SASL_MECHANISM, "mechanisms": offered}
        conn.sasl = SaslSession(self.security, body.mechanism)
        return {"error_code": NONE, "mechanisms": offered}

    def _sasl_authenticate(self, conn: Connection, body: codec.RequestBody) -> codec.ResponseValues:
        if conn.sasl is None:  # no handshake: PLAIN, as before SCRAM was offered
            conn.sasl = SaslSession(self.security)
        try:
            answer, user = conn.sasl.authenticate(body.auth_bytes)
        except SaslFailed as exc:
            self.stats["sasl_failures"] += 1
            log_event(logger, logging.WARNING, "kafka_sasl_failed", peer=_peer(conn), user=exc.user,
                      mechanism=conn.sasl.mechanism, reason=exc.reason)
            return {"error_code": SASL_AUTHENTICATION_FAILED, "auth_bytes": b"", "error_message": exc.message}
        if user is not None:
            conn.authenticated = True
        return {"error_code": NONE, "error_message": None, "auth_bytes": answer, "session_lifetime_ms": 0}

    def _unsupported(self, conn: Connection, exc: codec.UnsupportedRequest) -> None:
        self.stats["unsupported_requests"] += 1
        # Java clients open every connection with ApiVersions v4 and fall back: not news
        level = logging.DEBUG if exc.api_key == API_VERSIONS else logging.WARNING
        log_event(logger, level, "kafka_unsupported_request", peer=_peer(conn), api=exc.api_key,
                  version=exc.api_version)
        call = Call(conn, exc.api_key, exc.api_version, exc.correlation_id, None, None)
        if exc.api_key == API_VERSIONS:  # the v0 answer, which every client can read
            call.api_version = 0
            call.respond(api_versions_values(UNSUPPORTED_VERSION))
            return
        if codec.response_schema(exc.api_key, exc.api_version) is None:
            self._close(conn, "unknown_api", api=exc.api_key, version=exc.api_version)
            return
        self._answer_error(call, UNSUPPORTED_VERSION)

    def _answer_error(self, call: Call, code: int) -> None:
        schema = codec.response_schema(call.api_key, call.api_version)
        call.answered = True
        if schema is None:  # an API this listener serves always has one; without it nothing can be answered
            self._close(call.connection, "unknown_api", api=call.api_key, version=call.api_version)
            return
        self._send(call, codec.encode_response(call.api_key, call.api_version, call.correlation_id,
                                               codec.error_body(schema, code)))

    # -- answering --------------------------------------------------------------------------

    def answer(self, call: Call, values: codec.ResponseValues) -> None:
        conn = call.connection
        if conn.closed:
            return
        schema = codec.response_schema(call.api_key, call.api_version)
        if schema is None:  # as in _answer_error
            self._close(conn, "unknown_api", api=call.api_key, version=call.api_version)
            return
        try:
            body = codec.build(schema, values)
            frame = codec.encode_response(call.api_key, call.api_version, call.correlation_id, body)
        except Exception as exc:  # a handler bug is answered, not fatal
            self.stats["handler_errors"] += 1
            log_event(logger, logging.ERROR, "kafka_encode_failed", api=call.api_key, version=call.api_version,
                      error=repr(exc))
            frame = codec.encode_response(call.api_key, call.api_version, call.correlation_id,
                                          codec.error_body(schema, UNKNOWN_SERVER_ERROR))
        self._send(call, frame)

    def answer_fetch(self, call: Call, values: FetchResponseValues) -> None:
        """Record bytes go out as the views the log returned (``fetch_encode``)."""
        if not call.connection.closed:
            self._send_parts(call, encode_fetch_response(call.api_version, call.correlation_id, values))

    def answered_silently(self, call: Call) -> None:
        if call.connection.waiting is call:
            call.connection.waiting = None
            self._resumed.append(call.connection)

    def _send(self, call: Call, frame: bytes) -> None:
        self._send_parts(call, [frame])

    def _send_parts(self, call: Call, parts: Sequence[bytes | memoryview]) -> None:
        conn = call.connection
        if conn.closed:
            return
        for part in parts:
            view = memoryview(part).cast("B")
            if len(view):  # an empty part would stall the send loop
                conn.outq.append(view)
                conn.out_bytes += len(view)
        self._write(conn)
        if conn.waiting is call:  # the parked request is answered: go on with the next
            conn.waiting = None
            self._resumed.append(conn)
        elif not conn.closed:
            self._update_interest(conn)

    def _write(self, conn: Connection) -> None:
        while conn.outq and not conn.closed:
            try:  # one system call for up to 64 queued parts (a Fetch is several); TLS: one each
                if isinstance(conn.sock, ssl.SSLSocket):
                    sent = conn.sock.send(conn.outq[0])
                else:
                    sent = conn.sock.sendmsg(list(itertools.islice(conn.outq, SENDMSG_PARTS)))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    log_event(logger, logging.WARNING, "kafka_send_failed", peer=_peer(conn), error=exc)
                self._close(conn, None)
                return
            conn.out_bytes -= sent
            while sent:
                head = conn.outq[0]
                if sent >= len(head):
                    sent -= len(head)
                    conn.outq.popleft()
                else:
                    conn.outq[0] = head[sent:]
                    sent = 0


def _peer(conn: Connection) -> str:
    return f"{conn.peer[0]}:{conn.peer[1]}" if conn.peer else "?"


def start_kafka_listener(server: BrokerServer, listen: str, *, advertised: str | None = None,
                         insecure: bool = False, max_request_bytes: int | None = None,
                         tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                         sasl_users: str | Path | None = None) -> KafkaListener:
    """Bind the Kafka listener and add it to ``server``'s loop. Raises ValueError (bad
    address or security files, or a non-loopback bind without TLS+SASL and without
    ``insecure``) or OSError (bind failed)."""
    host, port = parse_host_port(listen)
    security = KafkaSecurity.from_files(tls_cert, tls_key, sasl_users)
    if not is_loopback_host(host) and not insecure and not security.protects_remote_clients:
        raise ValueError(f"Kafka listener {listen} is reachable from other hosts: configure TLS and SASL "
                         "(--kafka-tls-cert, --kafka-tls-key, --kafka-sasl-users), bind 127.0.0.1, or pass "
                         "--kafka-insecure (kafka_insecure = true) to accept unauthenticated clients")
    adv_host, adv_port = parse_host_port(advertised) if advertised else (host, port)
    broker = KafkaBroker(server, adv_host, adv_port,
                         **({"max_request_bytes": max_request_bytes} if max_request_bytes else {}))
    listener = KafkaListener(broker, host, port, security)
    listener.bind()
    if not advertised or adv_port == 0:
        broker.advertised_port = listener.port  # port 0: clients must be told the real one
    if not advertised and host in ("0.0.0.0", "::"):
        broker.advertised_host = socket.gethostname()
    server.extensions.append(listener)
    return listener
