"""The internal names are a contract with data already written (local logs, the cloud Kafka,
health records): their spelling is pinned here, and every user of a name takes it from
broker.base.names instead of spelling it again."""

from __future__ import annotations

import ast
from pathlib import Path

from broker.base import names


def test_names_written_to_disk_and_to_the_cloud_keep_their_spelling():
    assert (names.HEALTH_TOPIC, names.DRIVES_TOPIC, names.MIRROR_GROUP) == ("_health", "_drives", "_mirror")
    assert (names.HEADER_CAPTURE, names.HEADER_VEHICLE, names.HEADER_EPOCH) == (
        "edge.capture_ns", "edge.vehicle", "edge.epoch")
    assert (names.HEADER_SOURCE_TOPIC, names.HEADER_SOURCE_PARTITION, names.HEADER_SOURCE_OFFSET) == (
        "edge.source.topic", "edge.source.partition", "edge.source.offset")
    assert (names.HEADER_ENCODING, names.HEADER_SENSOR, names.HEADER_KEYFRAME) == ("encoding", "sensor", "keyframe")
    assert names.CAMERA_ENCODINGS == ("jpeg", "png", "bgr8", "h264", "h265")
    assert (names.POINTCLOUD_ENCODING, names.JSON_ENCODING) == ("pointcloud", "json")


def test_internal_names_are_recognised_and_mirror_headers_share_the_prefix():
    assert all(names.is_internal(n) for n in (*names.INTERNAL_TOPICS, names.MIRROR_GROUP))
    assert not names.is_internal("camera.front")
    mirror_headers = (names.HEADER_CAPTURE, names.HEADER_VEHICLE, names.HEADER_EPOCH, names.HEADER_SOURCE_TOPIC,
                      names.HEADER_SOURCE_PARTITION, names.HEADER_SOURCE_OFFSET)
    assert all(h.startswith(names.MIRROR_HEADER_PREFIX) for h in mirror_headers)
    assert (names.HEADER_REJECT_ERROR, names.HEADER_REJECT_TOPIC) == ("edge.reject.error", "edge.reject.topic")


def test_no_module_spells_a_contract_name_again():
    """Every string literal (and literal tuple of encodings) in broker/, drivers/ and edge/ that
    equals one of the contract's names: only broker/base/names.py may hold one."""
    single = {names.HEALTH_TOPIC, names.DRIVES_TOPIC, names.MIRROR_GROUP, names.HEADER_CAPTURE,
              names.HEADER_VEHICLE, names.HEADER_EPOCH, names.HEADER_SOURCE_TOPIC, names.HEADER_SOURCE_PARTITION,
              names.HEADER_SOURCE_OFFSET, names.HEADER_REJECT_ERROR, names.HEADER_REJECT_TOPIC}
    encoding_lists = {frozenset(names.IMAGE_ENCODINGS), frozenset(names.VIDEO_ENCODINGS),
                      frozenset(names.CAMERA_ENCODINGS)}
    root = Path(__file__).resolve().parents[3]
    spelled = []
    for path in sorted(p for package in ("broker", "drivers", "edge") for p in (root / package).rglob("*.py")):
        if path == root / "broker" / "base" / "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in single:
                spelled.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                values = frozenset(e.value for e in node.elts if isinstance(e, ast.Constant))
                if values in encoding_lists:
                    spelled.append(f"{path.relative_to(root)}:{node.lineno} {sorted(values)}")
    assert not spelled, "import these from broker.base.names: " + ", ".join(spelled)
