"""The point-cloud payload contract: how a cloud travels as one broker record.

Owns: the record layout of a point cloud and its validation. Every producer of clouds
(LiDAR drivers) and every consumer (replay, export, onboard tools) goes through
``encode_cloud`` / ``decode_cloud``, so the contract lives in one place and needs numpy
only (no open3d, no sensor library).

Record value: the points of a numpy structured array, packed (no padding between fields,
no padding between points), ``points × itemsize`` bytes, in the byte order each field
names.

Record headers (UTF-8 text):

    encoding = "pointcloud"
    points   = "<count>"                       decimal, >= 0
    fields   = "x:<f4 y:<f4 z:<f4 intensity:<f4 ring:<u2 time:<f4"
               space-separated ``name:<numpy dtype str>``, in layout order; name is an
               identifier, dtype is one of f2/f4/f8, i1..i8, u1..u8, with an explicit byte
               order ``<`` or ``>`` for multi-byte types (``|`` for one byte). No ``,`` or
               ``=`` inside the value, so kcat's ``k=v,k=v`` header lines stay unambiguous.
               The old form (``x=<f4,y=<f4,...``, records written before) is still read.
    model    = "VLP-16"                        optional: the sensor model / source kind
    axes     = "REP-103"                       optional: the sensor frame's axes; "REP-103" is
                                               ROS's (x forward, y left, z up). Absent (records
                                               written before it existed): VeloView's (x right,
                                               y forward, z up), i.e. x_rep = y, y_rep = -x

The default layout ``POINT_DTYPE`` (22 bytes a point):

    x         <f4   metres, sensor frame (see the ``axes`` header)
    y         <f4   metres
    z         <f4   metres, up
    intensity <f4   reflectivity as reported by the sensor (0..255 for Velodyne)
    ring      <u2   beam: by elevation (0 = lowest) with ``axes``; laser id in older records
    time      <f4   seconds from the cloud's capture time to this point's firing

The Velodyne decoder's layout ``SENSOR_POINT_DTYPE`` (25 bytes a point) is the default
one plus two fields, so a reader of the default fields reads it unchanged:

    ...       the six fields above, with ``ring`` the beam's rank by elevation (0 = lowest),
              as the ROS drivers publish it
    laser       <u2  the laser id (its position in the calibration / firing order)
    return_type u1   RETURN_STRONGEST 1 | RETURN_LAST 2 | RETURN_BOTH 3 (dual return, the
                     strongest is the last) | RETURN_SECOND 4 (dual return, the strongest
                     other than the last); 0 = not known

Guarantees: ``decode_cloud(*encode_cloud(a))`` equals ``a`` field by field;
``decode_cloud`` never trusts a header: a malformed ``fields`` list, a non-numeric or
negative ``points``, a wrong ``encoding`` or a value whose length is not
``points × itemsize`` raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from broker.base.names import POINTCLOUD_ENCODING as ENCODING

POINT_DTYPE = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("z", "<f4"),
        ("intensity", "<f4"),
        ("ring", "<u2"),
        ("time", "<f4"),
    ]
)

SENSOR_POINT_DTYPE = np.dtype([*POINT_DTYPE.descr, ("laser", "<u2"), ("return_type", "u1")])
RETURN_UNKNOWN, RETURN_STRONGEST, RETURN_LAST, RETURN_BOTH, RETURN_SECOND = 0, 1, 2, 3, 4
AXES_REP103 = "REP-103"

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD_TYPE = re.compile(r"(?P<order>[<>|]?)(?P<kind>[fiu])(?P<size>[1248])\Z")
_ALLOWED_SIZES = {"f": {2, 4, 8}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}}
_MAX_FIELDS = 64


def fields_to_dtype(fields: str) -> np.dtype:
    """Parse a ``fields`` header (``x:<f4 y:<f4 ...``, or the old ``x=<f4,y=<f4,...``) into a
    packed structured dtype.

    Raises ValueError naming the offending item when the list is malformed."""
    if not isinstance(fields, str):
        raise ValueError(f"fields header must be text, got {type(fields).__name__}")
    if not fields.strip():
        raise ValueError("fields header is empty: expected 'name:<dtype> ...' e.g. 'x:<f4 y:<f4 z:<f4'")
    old_form = "=" in fields or "," in fields  # name=<dtype>,... (records written before the space form)
    pair = "=" if old_form else ":"
    items = fields.split(",") if old_form else fields.split()
    if len(items) > _MAX_FIELDS:
        raise ValueError(f"fields header lists {len(items)} fields, more than the {_MAX_FIELDS} allowed")
    layout: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        name, sep, type_str = item.strip().partition(pair)
        if not sep:
            raise ValueError(f"fields item {position} {item!r} is not 'name{pair}<dtype>'")
        if not _FIELD_NAME.match(name):
            raise ValueError(f"fields item {position} {item!r}: {name!r} is not a valid field name")
        if name in seen:
            raise ValueError(f"fields header names field {name!r} twice")
        seen.add(name)
        match = _FIELD_TYPE.match(type_str)
        if not match:
            raise ValueError(
                f"fields item {position} {item!r}: {type_str!r} is not a numpy dtype string like '<f4' or '<u2'"
            )
        kind, size, order = match["kind"], int(match["size"]), match["order"]
        if size not in _ALLOWED_SIZES[kind]:
            raise ValueError(f"fields item {position} {item!r}: there is no {kind}{size} type")
        if size > 1 and order not in ("<", ">"):
            raise ValueError(
                f"fields item {position} {item!r}: a {size}-byte type needs an explicit byte order ('<' or '>')"
            )
        layout.append((name, f"{order if size > 1 else '|'}{kind}{size}"))
    return np.dtype(layout)


def dtype_to_fields(dtype: np.dtype) -> str:
    """The ``fields`` header for a structured dtype (fields listed in offset order).

    Raises ValueError for dtypes the contract cannot carry (not structured, nested or
    sub-array fields, types other than float / signed / unsigned integers)."""
    dtype = np.dtype(dtype)
    fields = dtype.fields
    if dtype.names is None or fields is None:
        raise ValueError(f"a point cloud needs a structured dtype with named fields, got {dtype}")
    parts = []
    for name in sorted(dtype.names, key=lambda n: fields[n][1]):
        field_type = fields[name][0]
        if field_type.names is not None or field_type.subdtype is not None:
            raise ValueError(f"field {name!r} is nested or an array ({field_type}); only scalar fields are allowed")
        if field_type.kind not in _ALLOWED_SIZES or field_type.itemsize not in _ALLOWED_SIZES[field_type.kind]:
            raise ValueError(f"field {name!r} has type {field_type}; only float and integer types are allowed")
        parts.append(f"{name}:{field_type.str}")
    text = " ".join(parts)
    fields_to_dtype(text)  # the names must also satisfy the header grammar
    return text


def encode_cloud(points: np.ndarray, model: str | None = None) -> tuple[memoryview, dict[str, str]]:
    """Pack a 1-D structured point array into a record value and its headers (encoding,
    points, fields and, when given, model).

    The value is a zero-copy memoryview when the array is already packed and contiguous
    (e.g. any ``POINT_DTYPE`` array); padded or strided arrays are repacked first."""
    if not isinstance(points, np.ndarray):
        raise ValueError(f"points must be a numpy structured array, got {type(points).__name__}")
    if points.ndim != 1:
        raise ValueError(f"points must be a 1-D structured array, got shape {points.shape}")
    fields = dtype_to_fields(points.dtype)
    wire_dtype = fields_to_dtype(fields)
    if points.dtype != wire_dtype:
        packed = np.empty(points.shape, dtype=wire_dtype)
        for name in wire_dtype.names or ():  # fields_to_dtype always names its fields
            packed[name] = points[name]
        points = packed
    points = np.ascontiguousarray(points)
    headers = {"encoding": ENCODING, "points": str(points.shape[0]), "fields": fields}
    if model is not None:
        headers["model"] = str(model)
    return points.view(np.uint8).data, headers


def _header_text(headers: Mapping[str, bytes | str], key: str) -> str:
    if key not in headers:
        raise ValueError(f"point cloud record has no {key!r} header")
    value = headers[key]
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"point cloud header {key!r} is not UTF-8: {exc}") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"point cloud header {key!r} must be text or bytes, got {type(value).__name__}")


def decode_cloud(value: bytes | bytearray | memoryview | np.ndarray, headers: Mapping[str, bytes | str]) -> np.ndarray:
    """Rebuild the structured point array from a record value and its headers.

    The result is a view over ``value`` (read-only when ``value`` is bytes); copy it to
    modify. Raises ValueError on a header or length mismatch."""
    encoding = _header_text(headers, "encoding")
    if encoding != ENCODING:
        raise ValueError(f"record encoding is {encoding!r}, not {ENCODING!r}")
    count_text = _header_text(headers, "points").strip()
    if not (count_text.isascii() and count_text.isdigit()):
        raise ValueError(f"points header {count_text!r} is not a non-negative integer")
    count = int(count_text)
    dtype = fields_to_dtype(_header_text(headers, "fields"))
    buffer: np.ndarray | memoryview
    try:
        if isinstance(value, np.ndarray):
            buffer = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        else:
            buffer = memoryview(value).cast("B")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"point cloud value is not a contiguous byte buffer: {exc}") from None
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise ValueError(
            f"point cloud value is {len(buffer)} bytes but the headers describe {count} points × "
            f"{dtype.itemsize} bytes = {expected} bytes"
        )
    return np.frombuffer(buffer, dtype=dtype, count=count)
