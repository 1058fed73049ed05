"""Every internal name of the appliance, spelled once: internal topics, internal consumer
groups, record header names and the values of the ``encoding`` header.

These are a contract between processes (drivers write what the API, the mirror, status,
replay and export read) and with stored data (the names are in logs on disk and in the cloud
Kafka), so a name here never changes meaning; a new name is added, an old one kept.
Record layouts are described in docs/FORMAT.md (camera and point-cloud records) and
docs/MIRROR.md (the headers the mirror adds). Part of the floor (``broker.base``): imports
nothing of ours.

Internal topics and groups start with ``INTERNAL_PREFIX``: listings, patterns (``camera.*``,
``*``), the mirror's topic selection and event pins leave them out unless named.
"""

from __future__ import annotations

INTERNAL_PREFIX = "_"

# -- internal topics --------------------------------------------------------------------
HEALTH_TOPIC = "_health"  # one JSON record per driver (key: sensor name) and the mirror (key: "mirror") per interval
DRIVES_TOPIC = "_drives"  # drive start/end markers (edge.drives)
INTERNAL_TOPICS = (HEALTH_TOPIC, DRIVES_TOPIC)

# -- internal consumer groups -------------------------------------------------------------
MIRROR_GROUP = "_mirror"  # the mirror's committed offsets: what reached the cloud (pins, retention, status)


def is_internal(name: str) -> bool:
    """Whether a topic or group name is one of the appliance's own (``_health``, ``_mirror`` ...)."""
    return name.startswith(INTERNAL_PREFIX)


# -- record headers ---------------------------------------------------------------------
HEADER_ENCODING = "encoding"  # what the value is: one of the encodings below
HEADER_SENSOR = "sensor"  # the driver that wrote the record
HEADER_KEYFRAME = "keyframe"  # video: "1" on a record a decoder can start at
HEADER_CAPTURE = "edge.capture_ns"  # the capture time in ns, decimal (docs/FORMAT.md); the mirror writes it too
# written by the mirror on every record it ships to the cloud Kafka (docs/MIRROR.md)
MIRROR_HEADER_PREFIX = "edge."
HEADER_VEHICLE = "edge.vehicle"
HEADER_SOURCE_TOPIC = "edge.source.topic"
HEADER_SOURCE_PARTITION = "edge.source.partition"
HEADER_SOURCE_OFFSET = "edge.source.offset"
HEADER_EPOCH = "edge.epoch"
# added by the mirror to a record it sends to the dead-letter topic instead of its destination
HEADER_REJECT_ERROR = "edge.reject.error"
HEADER_REJECT_TOPIC = "edge.reject.topic"
HEADER_UPLINK = "edge.uplink"  # what the uplink did to a shipped record (edge/mirror/decimate.py)

# -- values of the encoding header ------------------------------------------------------
IMAGE_ENCODINGS = ("jpeg", "png", "bgr8")  # one whole image per record (drivers/camera/encoding.py)
VIDEO_ENCODINGS = ("h264", "h265")  # one Annex B access unit per record (drivers/camera/video.py)
CAMERA_ENCODINGS = (*IMAGE_ENCODINGS, *VIDEO_ENCODINGS)
POINTCLOUD_ENCODING = "pointcloud"  # packed points described by the fields header (drivers/pointcloud.py)
JSON_ENCODING = "json"  # health records and other small JSON values
