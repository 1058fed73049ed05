"""The one place that owns file and directory names of the data directory.

::

    DATA/
      recovery-points.json              durable offset per partition at the last checkpoint
      <topic>/topic.json                the topic's TopicConfig (written atomically)
      <topic>/topic.id                  the topic's id: 32 hex digits, new for every creation
      <topic>/<partition>/log-epochs.json        log epoch history (broker.storage.log_epochs)
      <topic>/<partition>/<base:020d>.log        segment: record batches back to back
      <topic>/<partition>/<base:020d>.index      sparse offset index (8-byte entries)
      <topic>/<partition>/<base:020d>.timeindex  sparse time index (12-byte entries)
      <topic>/<partition>/.clean-shutdown        present only after a clean close
      _groups/                          consumer-group offsets (owned by broker.groups)

Topic names are checked here so that no name can escape the data directory. Every file
that must survive a crash whole is written with ``atomic_write``: write a temp file, fsync
it, rename it over the target, fsync the directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InvalidTopicError

LOG_SUFFIX = ".log"
OFFSET_INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
CLEAN_SHUTDOWN_FILE = ".clean-shutdown"
TOPIC_CONFIG_FILE = "topic.json"
TOPIC_ID_FILE = "topic.id"
LOG_EPOCHS_FILE = "log-epochs.json"
RECOVERY_POINTS_FILE = "recovery-points.json"
GROUPS_DIR = "_groups"

MAX_TOPIC_NAME_LENGTH = 200
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_SEGMENT_NAME = re.compile(r"^(\d{20})\.(log|index|timeindex)$")


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a safe topic name, else raise InvalidTopicError saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must be a non-empty string")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters, the maximum is {MAX_TOPIC_NAME_LENGTH}"
        )
    if not _TOPIC_NAME.match(name) or name == GROUPS_DIR or DELETED_SUFFIX in name:
        raise InvalidTopicError(
            f"invalid topic name {name!r}: use letters, digits, '.', '_' and '-', "
            "not starting with '.' or '-'"
        )
    return name


def topic_dir(data_dir: Path, topic: str) -> Path:
    return data_dir / validate_topic_name(topic)


def partition_dir(data_dir: Path, topic: str, partition: int) -> Path:
    return topic_dir(data_dir, topic) / str(int(partition))


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    return directory / f"{base_offset:020d}{suffix}"


def segment_base_offsets(directory: Path) -> list[int]:
    """Base offsets of the segments (``.log`` files) in a partition directory, ascending."""
    bases = []
    for entry in os.listdir(directory):
        match = _SEGMENT_NAME.match(entry)
        if match and match.group(2) == "log":
            bases.append(int(match.group(1)))
    return sorted(bases)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Crash-safe replace: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
