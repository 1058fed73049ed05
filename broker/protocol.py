"""Wire protocol, version 1: the one definition of every frame (docs/PROTOCOL.md says the same).

Transport: ZeroMQ. The broker binds a ROUTER socket; clients connect DEALER sockets. A
request is one multipart message; requests are pipelined and matched to replies by
``request_id``. Frames of a request (the ROUTER prepends the client identity)::

    frame 0  request header   16 bytes, fixed layout below
    frame 1  metadata         UTF-8 JSON object (small: names, offsets, options)
    frame 2… payload          opaque bytes: record batches (produce), never parsed here

Header (16 bytes, little-endian)::

    offset size field       meaning
    0      2    magic       u16 0xED6E
    2      1    version     u8  protocol version, 1
    3      1    kind        u8  request type (REQUEST_TYPES); replies set bit 0x80
    4      8    request_id  u64 chosen by the client, echoed in the reply
    12     4    status      u32 0 in requests; in replies 0 = ok, else an error code
                                (broker/errors.py) and the metadata holds "error"

Replies carry the same header layout, the metadata frame, and for FETCH one payload frame
per requested partition (whole stored batches, possibly empty). A PRODUCE with
``acks=0`` gets no reply. Metadata JSON is parsed once per request, never per record.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from .errors import BrokerError, InvalidRequestError, UnsupportedVersionError

MAGIC = 0xED6E
VERSION = 1
REPLY_BIT = 0x80

MAGIC_FIELD = struct.Struct("<H")
VERSION_FIELD = struct.Struct("<B")
KIND_FIELD = struct.Struct("<B")
REQUEST_ID_FIELD = struct.Struct("<Q")
STATUS_FIELD = struct.Struct("<I")

MAGIC_OFFSET = 0
VERSION_OFFSET = MAGIC_OFFSET + MAGIC_FIELD.size
KIND_OFFSET = VERSION_OFFSET + VERSION_FIELD.size
REQUEST_ID_OFFSET = KIND_OFFSET + KIND_FIELD.size
STATUS_OFFSET = REQUEST_ID_OFFSET + REQUEST_ID_FIELD.size
HEADER_SIZE = STATUS_OFFSET + STATUS_FIELD.size  # 16

HEADER = struct.Struct("<HBBQI")
if HEADER.size != HEADER_SIZE:  # pragma: no cover - layout guard
    raise ImportError("protocol header layout mismatch")

# Request types
PRODUCE = 1
FETCH = 2
LIST_OFFSETS = 3
METADATA = 4
CREATE_TOPIC = 5
DELETE_TOPIC = 6
CONFIGURE_TOPIC = 7
COMMIT_OFFSETS = 8
FETCH_OFFSETS = 9
JOIN_GROUP = 10
HEARTBEAT = 11
LEAVE_GROUP = 12
LIST_GROUPS = 13
PING = 14
INIT_PRODUCER_ID = 15
PINS = 16  # events' pinned offset ranges: meta "action" set | clear | list (broker.storage.pins)

REQUEST_TYPES = {
    PRODUCE: "produce",
    FETCH: "fetch",
    LIST_OFFSETS: "list_offsets",
    METADATA: "metadata",
    CREATE_TOPIC: "create_topic",
    DELETE_TOPIC: "delete_topic",
    CONFIGURE_TOPIC: "configure_topic",
    COMMIT_OFFSETS: "commit_offsets",
    FETCH_OFFSETS: "fetch_offsets",
    JOIN_GROUP: "join_group",
    HEARTBEAT: "heartbeat",
    LEAVE_GROUP: "leave_group",
    LIST_GROUPS: "list_groups",
    PING: "ping",
    INIT_PRODUCER_ID: "init_producer_id",
    PINS: "pins",
}

# Number of payload frames each request carries (after header and metadata).
PAYLOAD_FRAMES = {PRODUCE: 1}

ACKS_NONE = 0
ACKS_WRITTEN = 1
ACKS_DURABLE = 2
ACKS = {"none": ACKS_NONE, "written": ACKS_WRITTEN, "durable": ACKS_DURABLE}

MAX_METADATA_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Header:
    magic: int
    version: int
    kind: int
    request_id: int
    status: int

    @property
    def is_reply(self) -> bool:
        return bool(self.kind & REPLY_BIT)

    @property
    def request_kind(self) -> int:
        return self.kind & ~REPLY_BIT


def encode_header(kind: int, request_id: int, status: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, request_id, status)


def decode_header(frame: bytes | memoryview) -> Header:
    """Parse a header frame; raises InvalidRequestError / UnsupportedVersionError."""
    if len(frame) != HEADER_SIZE:
        raise InvalidRequestError(f"header frame is {len(frame)} bytes, expected {HEADER_SIZE}")
    header = Header(*HEADER.unpack(frame))
    if header.magic != MAGIC:
        raise InvalidRequestError(f"bad protocol magic 0x{header.magic:04x}")
    if header.version != VERSION:
        raise UnsupportedVersionError(
            f"protocol version {header.version} is not supported (this broker speaks {VERSION})"
        )
    return header


def encode_metadata(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode()


def decode_metadata(frame: bytes | memoryview) -> dict[str, Any]:
    if len(frame) > MAX_METADATA_BYTES:
        raise InvalidRequestError(f"metadata frame of {len(frame)} bytes exceeds {MAX_METADATA_BYTES}")
    try:
        meta = json.loads(bytes(frame))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"metadata frame is not a JSON object: {exc}") from None
    if not isinstance(meta, dict):
        raise InvalidRequestError("metadata frame must be a JSON object")
    return meta


def parse_request(frames: list[Any]) -> tuple[Header, dict[str, Any], list[Any]]:
    """Split a request (without the ROUTER identity) into header, metadata, payload frames."""
    if len(frames) < 2:
        raise InvalidRequestError(f"a request has at least 2 frames (header, metadata), got {len(frames)}")
    header = decode_header(frames[0])
    if header.is_reply:
        raise InvalidRequestError("a reply was sent to the broker")
    kind = header.request_kind
    if kind not in REQUEST_TYPES:
        raise InvalidRequestError(f"unknown request type {kind}")
    expected = 2 + PAYLOAD_FRAMES.get(kind, 0)
    if len(frames) != expected:
        raise InvalidRequestError(
            f"{REQUEST_TYPES[kind]} takes {expected} frames, got {len(frames)}"
        )
    return header, decode_metadata(frames[1]), list(frames[2:])


def error_reply(kind: int, request_id: int, error: BrokerError) -> list[bytes]:
    """An error reply's frames; its metadata is protocol_messages.ErrorReply (with ``kafka_error``,
    e.g. KAFKA_STORAGE_ERROR for a full disk, where one applies)."""
    from .protocol_messages import ErrorReply  # the messages module builds on this one

    return [encode_header(kind | REPLY_BIT, request_id, error.code), ErrorReply.of(error).encode()]


def ok_reply(kind: int, request_id: int, meta: dict[str, Any], payloads: list[Any] | None = None) -> list[Any]:
    return [encode_header(kind | REPLY_BIT, request_id, 0), encode_metadata(meta), *(payloads or [])]


# -- typed field access: every message field (broker/protocol_messages.py) is checked here, with a reason --


def field(meta: dict[str, Any], name: str, kind: type | tuple[type, ...], *, default: Any = ...,
          minimum: int | None = None, maximum: int | None = None) -> Any:
    if name not in meta:
        if default is ...:
            raise InvalidRequestError(f"missing field {name!r}")
        return default
    value = meta[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidRequestError(f"field {name!r} must be {'/'.join(k.__name__ for k in kinds)}, got bool")
    if not isinstance(value, kinds):
        raise InvalidRequestError(
            f"field {name!r} must be {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if minimum is not None and value < minimum:
            raise InvalidRequestError(f"field {name!r} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise InvalidRequestError(f"field {name!r} must be <= {maximum}, got {value}")
    return value
