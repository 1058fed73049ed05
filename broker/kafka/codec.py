"""Kafka request and response bodies, (de)serialised by ``kio`` (generated from Kafka's own
JSON message definitions; no schema is written by hand here).

Wire format (Kafka protocol guide): every message is ``int32 size`` + ``size`` bytes.
A request starts with the request header: api_key i16, api_version i16, correlation_id i32,
client_id (nullable non-compact string), and, for flexible versions (header v2), tagged
fields. A response starts with the correlation id (header v0) plus tagged fields for
flexible versions (header v1), except ApiVersions, whose response header is always v0 so
that a client that does not yet know the broker's versions can read it.

Invariants:
- ``parse_request`` never raises anything but ``KafkaFrameError`` (frame unreadable: the
  connection is closed with a log line) or ``UnsupportedRequest`` (header readable, but
  API or version unknown: answered with UNSUPPORTED_VERSION).
- ``build(cls, values)`` turns plain dicts/lists/ints into kio entities of *any* version of
  a message: keys a version does not have are dropped, so one handler serves all versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_reader, entity_writer
from kio.serial.readers import Reader
from kio.static.primitive import i32
from kio.static.protocol import RequestPayload, ResponsePayload

from .bounds import check_body

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# what a handler answers: plain values (ints, strings, bytes, lists and dicts of them) that
# ``build`` turns into the response entity of the request's version
ResponseValues: TypeAlias = Mapping[str, object]
# a decoded request: a kio entity whose class is chosen at run time by (api key, version); the
# handlers read the fields of whichever version came (getattr for version-dependent ones)
RequestBody: TypeAlias = Any
EntityT = TypeVar("EntityT", bound="DataclassInstance")

API_VERSIONS_KEY = 18
_HEAD = struct.Struct(">hhi")  # api_key, api_version, correlation_id


class KafkaFrameError(Exception):
    """A frame that cannot be read as a Kafka request; the connection is closed."""


class UnsupportedRequest(Exception):
    """The header was read but the API key or version is not served."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int, reason: str):
        super().__init__(reason)
        self.api_key, self.api_version, self.correlation_id = api_key, api_version, correlation_id


@dataclass(frozen=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: RequestBody
    size: int


@cache
def request_schema(api_key: int, api_version: int) -> type[RequestPayload] | None:
    try:
        return load_request_schema(api_key, api_version)
    except (UnknownAPIKey, UnknownEntity, ImportError):
        return None


@cache
def response_schema(api_key: int, api_version: int) -> type[ResponsePayload] | None:
    try:
        return load_response_schema(api_key, api_version)
    except (UnknownAPIKey, UnknownEntity, ImportError):
        return None


def peek_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    if len(frame) < _HEAD.size:
        raise KafkaFrameError(f"request of {len(frame)} bytes is shorter than a request header")
    return _HEAD.unpack_from(frame, 0)


def parse_request(frame: bytes | memoryview, supported: dict[int, tuple[int, int]]) -> Request:
    """Decode one frame (without its size prefix) whose API and version are in ``supported``."""
    api_key, api_version, correlation_id = peek_header(frame)
    span = supported.get(api_key)
    schema = request_schema(api_key, api_version)
    if span is None or not span[0] <= api_version <= span[1] or schema is None:
        raise UnsupportedRequest(api_key, api_version, correlation_id,
                                 f"api {api_key} version {api_version} is not supported")
    read_header: Reader[RequestHeaderV1 | RequestHeaderV2] = (
        entity_reader(RequestHeaderV2) if schema.__flexible__ else entity_reader(RequestHeaderV1))
    try:
        header, used = read_header(frame, 0)
        check_body(schema, frame, used)  # before kio: it must never see an impossible length
        body, _ = entity_reader(schema)(frame, used)
    except Exception as exc:  # kio raises many kinds on malformed bytes
        raise KafkaFrameError(f"api {api_key} v{api_version}: malformed body: {type(exc).__name__}: {exc}") from None
    null = _null_in_non_nullable(body)
    if null is not None:  # kio reads a null array anywhere; Kafka's parser refuses it
        raise KafkaFrameError(f"api {api_key} v{api_version}: malformed body: {null} is null")
    # bytes after the body are ignored, as Kafka's parser does (librdkafka 2.x sends some)
    return Request(api_key, api_version, correlation_id, header.client_id, body, len(frame))


def _null_in_non_nullable(entity: DataclassInstance) -> str | None:
    """The name of the first field that is None although its schema does not allow null."""
    for f, hint in _fields(type(entity)):
        value = getattr(entity, f.name)
        nullable = _strip_optional(hint) is not hint
        if value is None:
            if not nullable:
                return f.name
            continue
        inner = _strip_optional(hint)
        if typing.get_origin(inner) is tuple and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            for item in value:
                found = _null_in_non_nullable(item)
                if found is not None:
                    return f"{f.name}.{found}"
        elif dataclasses.is_dataclass(inner):
            found = _null_in_non_nullable(value)
            if found is not None:
                return f"{f.name}.{found}"
    return None


def encode_response(api_key: int, api_version: int, correlation_id: int, body: ResponsePayload) -> bytes:
    """The size-prefixed response frame."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    flexible = type(body).__flexible__ and api_key != API_VERSIONS_KEY
    if flexible:
        entity_writer(ResponseHeaderV1)(out, ResponseHeaderV1(correlation_id=i32(correlation_id)))
    else:
        entity_writer(ResponseHeaderV0)(out, ResponseHeaderV0(correlation_id=i32(correlation_id)))
    entity_writer(type(body))(out, body)
    frame = out.getbuffer()
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    return bytes(frame)


# -- building entities from plain values ------------------------------------------------------


@cache
def _fields(cls: type[DataclassInstance]) -> tuple[tuple[dataclasses.Field[object], object], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


def _strip_optional(hint: object) -> object:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _convert(hint: object, kafka_type: str | None, value: object) -> object:
    if value is None:  # null where this version has no null (e.g. JoinGroup v0-6 protocol_name)
        return None if _strip_optional(hint) is not hint else _empty(hint, kafka_type)
    hint = _strip_optional(hint)
    if typing.get_origin(hint) is tuple and isinstance(value, Iterable):
        inner = typing.get_args(hint)[0]
        return tuple(_convert(inner, kafka_type, v) for v in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return build(hint, value)
    if kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    if kafka_type == "datetime_i64" and isinstance(value, int):
        return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
    if kafka_type == "error_code" and isinstance(value, int):
        return ErrorCode(value)
    return value


def build(cls: type[EntityT], values: ResponseValues) -> EntityT:
    """A ``cls`` entity from ``values``; keys unknown to this version are ignored, fields
    missing from ``values`` take their schema default or an empty value."""
    kwargs: dict[str, object] = {}
    for f, hint in _fields(cls):
        kafka_type = f.metadata.get("kafka_type")
        if f.name in values:
            kwargs[f.name] = _convert(hint, kafka_type, values[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _empty(hint, kafka_type)
    return cls(**kwargs)


def _empty(hint: object, kafka_type: str | None) -> object:
    base = _strip_optional(hint)
    if base is not hint:  # nullable
        return None
    if typing.get_origin(base) is tuple:
        return ()
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        return build(base, {})
    if kafka_type == "error_code":
        return ErrorCode.none
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(0)
    if kafka_type == "datetime_i64":
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    if kafka_type == "uuid":
        import uuid

        return uuid.UUID(int=0)
    if kafka_type in ("string",):
        return ""
    if kafka_type in ("bytes", "records"):
        return b""
    if kafka_type == "bool":
        return False
    if kafka_type == "float64":
        return 0.0
    return 0


def error_body(cls: type[EntityT], code: int) -> EntityT:
    """A response of ``cls`` carrying ``code`` in its top-level error field(s), everything
    else empty: what Kafka answers for a request it cannot serve."""
    values = {f.name: code for f, _ in _fields(cls) if f.metadata.get("kafka_type") == "error_code"}
    return build(cls, values)


def millis(value: datetime.timedelta | datetime.datetime | int) -> int:
    """A kio duration or timestamp field as integer milliseconds."""
    if isinstance(value, datetime.timedelta):
        return int(value / datetime.timedelta(milliseconds=1))
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return int(value)
