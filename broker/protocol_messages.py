"""Native protocol v1 messages: the one schema of every request's and reply's metadata frame.

Frame 1 of a request or reply (broker/protocol.py) is a JSON object; its layout per request
kind is defined here and nowhere else, as one frozen dataclass per message with one field per
line, in wire order (JSON keys are written in field order)::

    @dataclass(frozen=True, kw_only=True)
    class ProduceRequest(Request[ProduceReply], kind=P.PRODUCE, payloads=1):
        topic: str
        partition: int = field(metadata=wire(minimum=0))
        acks: int = field(default=P.ACKS_WRITTEN, metadata=wire("(0 none, 1 written, 2 durable)", minimum=0, maximum=2))

- A field's Python annotation gives its JSON type (str, int, bool, list, dict, ``| None``
  for null), its dataclass default makes it optional; ``wire()`` adds its doc line, bounds,
  whether ``None`` is left out of the object instead of sent as null, and codecs for
  structured values (lists of entries).
- ``from_meta`` decodes and checks a metadata object (a missing or mistyped field is
  InvalidRequestError naming it, through ``protocol.field``); ``to_meta`` encodes one. Keys
  a message does not define are ignored when decoding.
- A request class names its reply class as its type argument, its kind, and its payload
  frame count; a request kind with variants (PINS) tags each with a fixed first field.
- docs/PROTOCOL.md's request table is ``requests_table()`` (``python -m
  broker.protocol_messages`` prints it; tests/broker/test_protocol_messages.py compares).

Decoding costs one ``protocol.field`` check per field per request, never per record.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar

from . import protocol as P
from .errors import BrokerError, InvalidRequestError

REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Wire:
    """How one field travels: doc line, integer bounds, null handling and value codecs."""

    doc: str = ""
    minimum: int | None = None
    maximum: int | None = None
    omit_none: bool = False  # None leaves the key out of the object (else it is sent as null)
    decode: Callable[[Any], Any] | None = None  # checked JSON value -> typed value (raises InvalidRequestError)
    encode: Callable[[Any], Any] | None = None  # typed value -> JSON value
    items: type[Message] | None = None  # a list of these objects (codec and doc from their fields)


def wire(doc: str = "", *, minimum: int | None = None, maximum: int | None = None, omit_none: bool = False,
         decode: Callable[[Any], Any] | None = None, encode: Callable[[Any], Any] | None = None,
         items: type[Message] | None = None) -> dict[str, Wire]:
    """The ``metadata`` of a message field that has a doc line or more (``field(metadata=wire(...))``);
    a plain field (``name: type``) travels as its type says."""
    if items is not None:
        decode, encode = items.list_from_json, Message.list_to_json
    return {"wire": Wire(doc, minimum, maximum, omit_none, decode, encode, items)}


_PLAIN = Wire()


class _FieldSpec(NamedTuple):
    name: str
    json_types: tuple[type, ...]
    default: Any  # REQUIRED, or the value when absent
    factory: Callable[[], Any] | None  # makes the value when absent (a fresh dict, list...)
    wire: Wire


# how a class decodes and encodes, flattened into tuples once per class (the produce and fetch
# paths decode a request and encode a reply per call: attribute lookups add up there)
_Decoding = tuple[tuple[str, tuple[type, ...], Any, Callable[[], Any] | None, int | None, int | None,
                        Callable[[Any], Any] | None], ...]
_Encoding = tuple[tuple[str, bool, Callable[[Any], Any] | None], ...]
_ABSENT = object()


def _json_types(annotation: Any) -> tuple[type, ...]:
    """The JSON types a field annotation admits (list for list/tuple, NoneType for ``| None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _json_types(arg))
    base = origin or annotation
    if base in (list, tuple):
        return (list,)
    if base is type(None):
        return (type(None),)
    if base in (str, int, bool, dict, float):
        return (base,)
    raise TypeError(f"no JSON type for annotation {annotation!r}")


class Message:
    """Base of every metadata structure (dataclass subclasses; fields in wire order)."""

    TAG: ClassVar[tuple[str, str] | None] = None  # (field, value) written first: a variant of a kind
    NOTE: ClassVar[str] = ""  # trailing remark of this message in docs/PROTOCOL.md's table
    _specs: ClassVar[dict[type, tuple[_FieldSpec, ...]]] = {}
    _decodings: ClassVar[dict[type, _Decoding]] = {}
    _encodings: ClassVar[dict[type, _Encoding]] = {}

    @classmethod
    def specs(cls) -> tuple[_FieldSpec, ...]:
        found = Message._specs.get(cls)
        if found is None:
            hints = typing.get_type_hints(cls)
            found = tuple(
                _FieldSpec(f.name, _json_types(hints[f.name]), f.default,
                           None if f.default_factory is dataclasses.MISSING else f.default_factory,
                           f.metadata.get("wire", _PLAIN))
                for f in dataclasses.fields(cls))  # type: ignore[arg-type]  # every Message subclass is a dataclass
            Message._specs[cls] = found
            Message._decodings[cls] = tuple((s.name, s.json_types, s.default, s.factory, s.wire.minimum,
                                             s.wire.maximum, s.wire.decode) for s in found)
            Message._encodings[cls] = tuple((s.name, s.wire.omit_none, s.wire.encode) for s in found)
        return found

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Self:
        """Decode a metadata object; raises InvalidRequestError naming the first bad field."""
        decoding = Message._decodings.get(cls)
        if decoding is None:
            cls.specs()
            decoding = Message._decodings[cls]
        values: dict[str, Any] = {}
        for name, json_types, default, factory, minimum, maximum, decode in decoding:
            value = meta.get(name, _ABSENT)
            if value is _ABSENT:
                if factory is not None:
                    value = factory()
                elif default is REQUIRED:
                    raise InvalidRequestError(f"missing field {name!r}")
                else:
                    value = default
            elif (type(value) not in json_types or (type(value) is int and (
                    (minimum is not None and value < minimum) or (maximum is not None and value > maximum)))):
                # the reason, from the one field checker (bool is never an int here: type() is exact)
                value = P.field(meta, name, json_types, minimum=minimum, maximum=maximum)
            if decode is not None and value is not None:
                value = decode(value)
            values[name] = value
        return cls(**values)

    def to_meta(self) -> dict[str, Any]:
        encoding = Message._encodings.get(type(self))
        if encoding is None:
            self.specs()
            encoding = Message._encodings[type(self)]
        meta: dict[str, Any] = {}
        if self.TAG is not None:
            meta[self.TAG[0]] = self.TAG[1]
        for name, omit_none, encode in encoding:
            value = getattr(self, name)
            if value is None:
                if not omit_none:
                    meta[name] = None
            else:
                meta[name] = value if encode is None else encode(value)
        return meta

    def encode(self) -> bytes:
        return P.encode_metadata(self.to_meta())

    @classmethod
    def list_from_json(cls, raw: list[Any]) -> list[Self]:
        return [cls.from_meta(P.field({cls.__name__: item}, cls.__name__, dict)) for item in raw]

    @staticmethod
    def list_to_json(items: list[Message]) -> list[dict[str, Any]]:
        return [item.to_meta() for item in items]


ReplyT = TypeVar("ReplyT", bound=Message)

# kind -> request class; a kind with variants: kind -> (tag field, {tag value: class})
_REQUESTS: dict[int, type[Request[Any]]] = {}
_VARIANTS: dict[int, tuple[str, dict[str, type[Request[Any]]]]] = {}


class Request(Message, Generic[ReplyT]):
    """A request's metadata; ``REPLY`` (its type argument) is what a success carries back."""

    KIND: ClassVar[int]
    PAYLOADS: ClassVar[int] = 0
    REPLY: ClassVar[type[Message]]

    def __init_subclass__(cls, *, kind: int | None = None, payloads: int = 0, tag: tuple[str, str] | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        cls.KIND, cls.PAYLOADS, cls.TAG = kind, payloads, tag
        (reply,) = typing.get_args(cls.__orig_bases__[0])  # type: ignore[attr-defined]  # set by Generic[...]
        cls.REPLY = reply
        if tag is None:
            _REQUESTS[kind] = cls
        else:
            _VARIANTS.setdefault(kind, (tag[0], {}))[1][tag[1]] = cls

    def decode_reply(self, meta: dict[str, Any]) -> ReplyT:
        return typing.cast(ReplyT, self.REPLY.from_meta(meta))


def decode_request(kind: int, meta: dict[str, Any]) -> Request[Any]:
    """The typed request of a parsed request (``protocol.parse_request`` checked the kind)."""
    variants = _VARIANTS.get(kind)
    if variants is None:
        return _REQUESTS[kind].from_meta(meta)
    tag, classes = variants
    value = P.field(meta, tag, str)
    if value not in classes:
        names = list(classes)
        raise InvalidRequestError(f"{P.REQUEST_TYPES[kind]} {tag} must be {', '.join(names[:-1])} or {names[-1]}, "
                                  f"not {value!r}")
    return classes[value].from_meta(meta)


def ok_reply(request_id: int, request: Request[ReplyT], reply: ReplyT, payloads: Sequence[Any] = ()) -> list[Any]:
    """A success reply's frames: header, ``reply`` (of ``request``'s reply type), payloads."""
    return [P.encode_header(request.KIND | P.REPLY_BIT, request_id, 0), reply.encode(), *payloads]


# -- structured values ------------------------------------------------------------------------


def _int_item(name: str, value: Any, minimum: int = 0) -> int:
    return typing.cast(int, P.field({name: value}, name, int, minimum=minimum))


class FetchPosition(NamedTuple):
    """One FETCH entry: ``[topic, partition, offset]`` or ``[topic, partition, offset, log_epoch]``."""

    topic: str
    partition: int
    offset: int
    log_epoch: int | None = None


MAX_FETCH_PARTITIONS = 4096


def _decode_fetch_positions(raw: list[Any]) -> tuple[FetchPosition, ...]:
    if not raw or len(raw) > MAX_FETCH_PARTITIONS:
        raise InvalidRequestError(f"fetch needs 1..{MAX_FETCH_PARTITIONS} partitions")
    out = []
    make = FetchPosition._make
    for part in raw:
        # fast path for well-formed entries (type() is exact: a bool is no int here)
        if (type(part) is list and 3 <= len(part) <= 4 and type(part[0]) is str and type(part[1]) is int
                and type(part[2]) is int and part[1] >= 0 and part[2] >= 0):
            if len(part) == 3:
                out.append(make((*part, None)))
                continue
            if type(part[3]) is int and part[3] >= 0:
                out.append(make(part))
                continue
        if not isinstance(part, list) or len(part) not in (3, 4):
            raise InvalidRequestError("each fetch partition is [topic, partition, offset] or "
                                      "[topic, partition, offset, log_epoch]")
        topic = P.field({"topic": part[0]}, "topic", str)
        partition, offset = _int_item("partition", part[1]), _int_item("offset", part[2])
        out.append(FetchPosition(topic, partition, offset, _int_item("log_epoch", part[3]) if len(part) == 4 else None))
    if len({(p.topic, p.partition) for p in out}) != len(out):
        raise InvalidRequestError("a fetch lists a partition more than once")
    return tuple(out)


def _encode_fetch_positions(positions: Sequence[FetchPosition]) -> list[list[Any]]:
    return [list(p) if p.log_epoch is not None else [p.topic, p.partition, p.offset] for p in positions]


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _decode_offsets(raw: list[Any]) -> tuple[tuple[str, int, int], ...]:
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and all(_is_count(x) for x in item[1:])):
            raise InvalidRequestError("each offset is [topic, partition, offset] with non-negative integers")
    return tuple((t, p, o) for t, p, o in raw)


def _decode_topic_partitions(raw: list[Any]) -> tuple[tuple[str, int], ...]:
    if not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_count(item[1])
               for item in raw):
        raise InvalidRequestError("each partition is [topic, partition] with a topic name and a non-negative integer")
    return tuple((t, p) for t, p in raw)


def _topic_names(message: str) -> Callable[[list[Any]], tuple[str, ...]]:
    def decode(raw: list[Any]) -> tuple[str, ...]:
        if not all(isinstance(t, str) for t in raw):
            raise InvalidRequestError(message)
        return tuple(raw)
    return decode


def _join_topics(raw: list[Any]) -> tuple[str, ...]:
    if not raw:
        raise InvalidRequestError("join needs a non-empty list of topic names")
    return _topic_names("join needs a non-empty list of topic names")(raw)


def _pairs(raw: list[Any]) -> tuple[tuple[str, int], ...]:
    return tuple((t, p) for t, p in raw)


def _triples(raw: list[Any]) -> tuple[tuple[str, int, int], ...]:
    return tuple((t, p, o) for t, p, o in raw)


# -- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ErrorReply(Message):
    """Any request's failure: header ``status`` = ``error``."""

    error: int = field(metadata=wire("the error code (broker/errors.py)"))
    message: str = field(metadata=wire("the reason"))
    retriable: bool
    kafka_error: str | None = field(default=None, metadata=wire("Kafka's name for it", omit_none=True))

    @classmethod
    def of(cls, error: BrokerError) -> ErrorReply:
        return cls(error=error.code, message=error.message, retriable=error.retriable,
                   kafka_error=error.kafka_error or None)


@dataclass(frozen=True, kw_only=True)
class ProduceReply(Message):
    NOTE = "no reply for acks 0"
    base_offset: int
    last_offset: int
    append_time: int
    durable_offset: int


@dataclass(kw_only=True, slots=True)
class FetchedPartition(Message):
    """One partition of a FETCH reply, in request order; its data is the matching payload frame."""

    topic: str
    partition: int
    error: int = field(default=0, metadata=wire("(0 or code)"))
    log_start: int | None = field(default=None, metadata=wire(omit_none=True))
    next_offset: int | None = field(default=None, metadata=wire(omit_none=True))
    durable_offset: int | None = field(default=None, metadata=wire(omit_none=True))
    topic_id: str | None = field(default=None, metadata=wire(omit_none=True))
    log_epoch: int | None = field(default=None, metadata=wire(omit_none=True))
    truncated_to: int | None = field(default=None, metadata=wire("(with LogTruncated)", omit_none=True))
    message: str | None = field(default=None, metadata=wire(omit_none=True))
    bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class FetchReply(Message):
    NOTE = "then one payload frame each"
    partitions: list[FetchedPartition] = field(metadata=wire("per partition", items=FetchedPartition))


@dataclass(frozen=True, kw_only=True)
class ListOffsetsReply(Message):
    offset: int
    found: bool


@dataclass(frozen=True, kw_only=True)
class MetadataReply(Message):
    topics: dict[str, Any] = field(metadata=wire(
        "name → `config`, `id`, `partitions` (`log_start`, `next_offset`, `log_epoch`, "
                                  "`durable_offset`, `size_bytes`, `segments`, `protected_offset`)"))
    broker: dict[str, Any] = field(metadata=wire("endpoint, disk, deletions"))


@dataclass(frozen=True, kw_only=True)
class CreateTopicReply(Message):
    created: bool
    config: dict[str, Any] | None = field(default=None, metadata=wire("(when created)", omit_none=True))


@dataclass(frozen=True, kw_only=True)
class DeleteTopicReply(Message):
    deleted: bool


@dataclass(frozen=True, kw_only=True)
class ConfigureTopicReply(Message):
    config: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class CommitOffsetsReply(Message):
    committed: int


@dataclass(frozen=True, kw_only=True)
class FetchOffsetsReply(Message):
    offsets: tuple[tuple[str, int, int], ...] = field(metadata=wire("`[[topic, partition, offset], …]`",
                                                                    decode=_triples))


@dataclass(frozen=True, kw_only=True)
class JoinGroupReply(Message):
    member_id: str
    generation: int
    assignment: tuple[tuple[str, int], ...] = field(metadata=wire(decode=_pairs))


@dataclass(frozen=True, kw_only=True)
class HeartbeatReply(Message):
    rebalance: bool
    generation: int
    assignment: tuple[tuple[str, int], ...] = field(metadata=wire(decode=_pairs))


@dataclass(frozen=True, kw_only=True)
class LeaveGroupReply(Message):
    left: bool


@dataclass(frozen=True, kw_only=True)
class ListGroupsReply(Message):
    groups: dict[str, Any] = field(metadata=wire("name → `generation`, `members`, `offsets`"))


@dataclass(frozen=True, kw_only=True)
class PingReply(Message):
    time_ns: int
    version: int


@dataclass(frozen=True, kw_only=True)
class InitProducerIdReply(Message):
    NOTE = "Kafka's InitProducerId for an idempotent producer: a new id, epoch 0"
    producer_id: int
    producer_epoch: int


@dataclass(frozen=True, kw_only=True)
class PinSetReply(Message):
    pin: dict[str, Any] = field(metadata=wire("(`id`, `label`, `start_ns`, `end_ns`, `created_ns`, `topics`, `closed`, "
                               "`ranges` `[[topic, partition, first, next or null]]`, `lost`)"))


@dataclass(frozen=True, kw_only=True)
class PinClearReply(Message):
    cleared: bool


@dataclass(frozen=True, kw_only=True)
class PinListReply(Message):
    pins: list[dict[str, Any]] = field(metadata=wire(
        "(each also `pinned_bytes`, `records`, `shipped_records`, `shipped`)"))
    pinned_bytes: int
    pinned_deleted_bytes: int
    time_ns: int


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProduceRequest(Request[ProduceReply], kind=P.PRODUCE, payloads=1):
    topic: str
    partition: int = field(metadata=wire(minimum=0))
    acks: int = field(default=P.ACKS_WRITTEN, metadata=wire("(0 none, 1 written, 2 durable)", minimum=0, maximum=2))


@dataclass(frozen=True, kw_only=True)
class FetchRequest(Request[FetchReply], kind=P.FETCH):
    partitions: tuple[FetchPosition, ...] = field(metadata=wire(
        "`[[topic, partition, offset], …]` or `[topic, partition, offset, log_epoch]` (1–4096)",
        decode=_decode_fetch_positions, encode=_encode_fetch_positions))
    max_bytes: int = field(default=4 * 1024 * 1024, metadata=wire("(total)", minimum=1))
    max_wait_ms: int = field(default=0, metadata=wire("(0–60000)", minimum=0, maximum=60_000))


@dataclass(frozen=True, kw_only=True)
class ListOffsetsRequest(Request[ListOffsetsReply], kind=P.LIST_OFFSETS):
    topic: str
    partition: int = field(metadata=wire(minimum=0))
    spec: str = field(metadata=wire("(`earliest`, `latest`, `timestamp`)"))
    timestamp: int | None = field(default=None, metadata=wire("(ns)", omit_none=True))


@dataclass(frozen=True, kw_only=True)
class MetadataRequest(Request[MetadataReply], kind=P.METADATA):
    topics: list[str] | None = field(default=None, metadata=wire("list or null (all)"))


@dataclass(frozen=True, kw_only=True)
class CreateTopicRequest(Request[CreateTopicReply], kind=P.CREATE_TOPIC):
    topic: str
    config: dict[str, Any] = field(default_factory=dict,
                                   metadata=wire("(overrides of the defaults, same keys as `TopicConfig`)"))
    if_not_exists: bool = False


@dataclass(frozen=True, kw_only=True)
class DeleteTopicRequest(Request[DeleteTopicReply], kind=P.DELETE_TOPIC):
    topic: str


@dataclass(frozen=True, kw_only=True)
class ConfigureTopicRequest(Request[ConfigureTopicReply], kind=P.CONFIGURE_TOPIC):
    topic: str
    config: dict[str, Any] = field(metadata=wire("(partitions may only grow)"))


@dataclass(frozen=True, kw_only=True)
class CommitOffsetsRequest(Request[CommitOffsetsReply], kind=P.COMMIT_OFFSETS):
    group: str
    offsets: tuple[tuple[str, int, int], ...] = field(metadata=wire("`[[topic, partition, offset], …]`",
                                                                    decode=_decode_offsets))


@dataclass(frozen=True, kw_only=True)
class FetchOffsetsRequest(Request[FetchOffsetsReply], kind=P.FETCH_OFFSETS):
    group: str
    partitions: tuple[tuple[str, int], ...] | None = field(
        default=None, metadata=wire("`[[topic, partition], …]`, absent or null: all", omit_none=True,
                                    decode=_decode_topic_partitions))


@dataclass(frozen=True, kw_only=True)
class JoinGroupRequest(Request[JoinGroupReply], kind=P.JOIN_GROUP):
    group: str
    member_id: str | None = field(default=None, metadata=wire("(null on first join)"))
    topics: tuple[str, ...] = field(metadata=wire(decode=_join_topics))
    session_timeout_ms: int = field(default=10_000, metadata=wire(minimum=100, maximum=600_000))


@dataclass(frozen=True, kw_only=True)
class HeartbeatRequest(Request[HeartbeatReply], kind=P.HEARTBEAT):
    group: str
    member_id: str
    generation: int


@dataclass(frozen=True, kw_only=True)
class LeaveGroupRequest(Request[LeaveGroupReply], kind=P.LEAVE_GROUP):
    group: str
    member_id: str


@dataclass(frozen=True, kw_only=True)
class ListGroupsRequest(Request[ListGroupsReply], kind=P.LIST_GROUPS):
    pass


@dataclass(frozen=True, kw_only=True)
class PingRequest(Request[PingReply], kind=P.PING):
    pass


@dataclass(frozen=True, kw_only=True)
class InitProducerIdRequest(Request[InitProducerIdReply], kind=P.INIT_PRODUCER_ID):
    pass


@dataclass(frozen=True, kw_only=True)
class PinSetRequest(Request[PinSetReply], kind=P.PINS, tag=("action", "set")):
    NOTE = ("events' pinned offset ranges (`broker/storage/pins.py`): unknown topic → UnknownTopic; window "
            "reaching back past a topic's `retention_age`, a duplicate or unknown id → InvalidRequest")
    id: str
    label: str = ""
    topics: tuple[str, ...] = field(metadata=wire(decode=_topic_names("topics must be a list of topic names")))
    start_ns: int = field(metadata=wire(minimum=0))
    end_ns: int = field(metadata=wire(minimum=0))


@dataclass(frozen=True, kw_only=True)
class PinClearRequest(Request[PinClearReply], kind=P.PINS, tag=("action", "clear")):
    id: str


@dataclass(frozen=True, kw_only=True)
class PinListRequest(Request[PinListReply], kind=P.PINS, tag=("action", "list")):
    pass


# -- docs/PROTOCOL.md ------------------------------------------------------------------------------


def _field_doc(spec: _FieldSpec) -> str:
    doc = spec.wire.doc
    text = f"`{spec.name}`" + (f" {doc}" if doc.startswith("(") else f": {doc}" if doc else "")
    return text + (f" ({_fields_cell(spec.wire.items)})" if spec.wire.items is not None else "")


def _fields_cell(message: type[Message]) -> str:
    return ", ".join(_field_doc(spec) for spec in message.specs()) or "—"


def _variants(kind: int) -> Iterator[tuple[str, type[Request[Any]]]]:
    if kind in _VARIANTS:
        tag, classes = _VARIANTS[kind]
        for value, cls in classes.items():
            yield f"`{tag}` = `{value}`: ", cls
    else:
        yield "", _REQUESTS[kind]


def requests_table() -> str:
    """docs/PROTOCOL.md's table of requests, one row per kind, from the classes above."""
    rows = ["| kind | name | metadata | payload | reply metadata |", "|---:|---|---|---|---|"]
    for kind in sorted(P.REQUEST_TYPES):
        variants = list(_variants(kind))
        notes = [cls.NOTE for _, cls in variants if cls.NOTE]
        request = "; ".join(label + _fields_cell(cls) for label, cls in variants)
        reply = "; ".join(label + _fields_cell(cls.REPLY) for label, cls in variants)
        reply_notes = [cls.REPLY.NOTE for _, cls in variants if cls.REPLY.NOTE]
        reply = "; ".join([reply, *reply_notes, *notes])
        payload = f"{variants[0][1].PAYLOADS} batch" if variants[0][1].PAYLOADS else "—"
        rows.append(f"| {kind} | {P.REQUEST_TYPES[kind].upper()} | {request} | {payload} | {reply} |")
    return "\n".join(rows) + "\n"


def all_requests() -> list[type[Request[Any]]]:
    """Every request class (variants included), in kind order."""
    return [cls for kind in sorted(P.REQUEST_TYPES) for _, cls in _variants(kind)]


if __name__ == "__main__":
    print(requests_table(), end="")
