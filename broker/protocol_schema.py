"""The schema machinery of the native protocol's messages (the messages: broker/protocol_messages.py).

A message is a dataclass subclass of ``Message`` whose fields, in wire order, are the keys
of its metadata JSON object:
- a field's annotation gives its JSON type (str, int, bool, list for list/tuple, dict,
  ``| None`` for null), its dataclass default makes it optional; ``wire()`` (the field's
  ``metadata``) adds its doc line, integer bounds, whether ``None`` is left out of the
  object instead of sent as null, and codecs for structured values (``items``: a list of
  sub-messages).
- ``from_meta`` decodes and checks an object (InvalidRequestError naming the first missing or
  mistyped field; the reason worded by ``protocol.field``); ``to_meta``/``encode`` write one.
  Keys a message does not define are ignored when decoding.
- ``Request[ReplyT]`` subclasses register under their kind (``kind=``, ``payloads=``; a kind
  with variants, PINS, tags each with a fixed first field, ``tag=``); ``decode_request``
  picks the class, ``ok_reply`` frames a success.
- ``requests_table`` renders docs/PROTOCOL.md's table of requests from the registry.

Cost: decoding is one exact-type check per field (``protocol.field`` only words the reason
for a bad one), encoding one attribute read per field: per request, never per record.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar

from . import protocol as P
from .errors import InvalidRequestError

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
