"""A structural pre-check of a request body before kio decodes it.

Why: kio's native reader reserves memory for an array from its declared length before
reading any element, and a failed reservation aborts the whole process (Rust's allocation
failure, not a Python exception). One frame declaring an array of 2^32 elements would kill
the broker. So every length in a body is checked against the bytes actually left in the
frame before kio sees it: an array of N elements needs at least N bytes, a string or bytes
field of N bytes needs N bytes. A body failing this is malformed (``KafkaFrameError``).

The walk follows the kio entity classes (generated from Kafka's JSON schemas): fixed-width
fields are skipped, strings/bytes/arrays are length-checked (legacy encodings in
non-flexible versions, compact ones and tagged-field sections in flexible versions).
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

from kio.static.protocol import Entity

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FIXED_WIDTH = {"int8": 1, "bool": 1, "int16": 2, "uint16": 2, "error_code": 2, "int32": 4, "uint32": 4,
               "timedelta_i32": 4, "int64": 8, "uint64": 8, "timedelta_i64": 8, "datetime_i64": 8,
               "float64": 8, "uuid": 16}


class BoundsError(ValueError):
    pass


class _Step(NamedTuple):
    """One untagged field of an entity class, as the walk reads it."""

    name: str
    kind: str  # "array", "struct", or the field's kafka_type
    element: type[DataclassInstance] | str | None  # array: its element class or kafka_type; struct: its class


@cache
def _plan(cls: type[DataclassInstance]) -> tuple[_Step, ...]:
    """The steps for each untagged field of an entity class, in wire order."""
    hints = typing.get_type_hints(cls)
    plan: list[_Step] = []
    for f in dataclasses.fields(cls):
        if "tag" in f.metadata:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args and typing.get_origin(hint) is not tuple:  # Optional[X]
            hint = args[0]
        if typing.get_origin(hint) is tuple:
            element = typing.get_args(hint)[0]
            is_struct = isinstance(element, type) and dataclasses.is_dataclass(element)
            plan.append(_Step(f.name, "array", element if is_struct else f.metadata["kafka_type"]))
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            plan.append(_Step(f.name, "struct", hint))
        else:
            plan.append(_Step(f.name, f.metadata["kafka_type"], None))
    return tuple(plan)


class _Cursor:
    def __init__(self, buf: bytes | memoryview, pos: int, flexible: bool):
        self.buf, self.pos, self.flexible = buf, pos, flexible

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise BoundsError(f"{what}: {n} bytes declared, {len(self.buf) - self.pos} left")
        self.pos += n

    def int_be(self, size: int, what: str) -> int:
        start = self.pos
        self.need(size, what)
        return int.from_bytes(self.buf[start:self.pos], "big", signed=True)

    def uvarint(self, what: str) -> int:
        value, shift = 0, 0
        while True:
            start = self.pos
            self.need(1, what)
            byte = self.buf[start]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise BoundsError(f"{what}: varint longer than 5 bytes")

    def length(self, legacy_size: int, what: str) -> int:
        """A declared length; -1 for null."""
        if self.flexible:
            return self.uvarint(what) - 1
        return self.int_be(legacy_size, what)


def check_body(cls: type[Entity], buf: bytes | memoryview, pos: int) -> None:
    """Raise BoundsError if any length in the body of ``cls`` at ``pos`` exceeds the frame."""
    _walk(cls, _Cursor(buf, pos, cls.__flexible__))


def _walk(cls: type[DataclassInstance], cur: _Cursor) -> None:
    for name, kind, element in _plan(cls):
        if kind == "array":
            count = cur.length(4, name)
            if count > len(cur.buf) - cur.pos:
                raise BoundsError(f"{name}: {count} elements declared, {len(cur.buf) - cur.pos} bytes left")
            for _ in range(max(count, 0)):
                if isinstance(element, str):
                    _scalar(cur, element, name)
                elif element is not None:
                    _walk(element, cur)
        elif kind == "struct" and element is not None and not isinstance(element, str):
            _walk(element, cur)
        else:
            _scalar(cur, kind, name)
    if cur.flexible:
        for _ in range(cur.uvarint("tagged fields")):
            cur.uvarint("tag")
            cur.need(cur.uvarint("tag size"), "tagged field")


def _scalar(cur: _Cursor, kind: str, name: str) -> None:
    width = FIXED_WIDTH.get(kind)
    if width is not None:
        cur.need(width, name)
    elif kind == "string":
        cur.need(max(cur.length(2, name), 0), name)
    elif kind in ("bytes", "records"):
        cur.need(max(cur.length(4, name), 0), name)
    elif kind in ("uvarint", "uvarlong", "varint", "varlong"):
        cur.uvarint(name)
    else:
        raise BoundsError(f"{name}: field type {kind!r} not known to the bounds check")
