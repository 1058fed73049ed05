"""Velodyne laser calibration: VeloView XML and ROS YAML files, built-in default tables.

Owns: the per-laser corrections the decoder applies and where they come from. A
``Calibration`` is immutable and holds one row per laser, in laser-id order (the order of
the channels in a firing sequence). Guarantees:

- ``load_veloview_xml`` reads VeloView's boost-serialisation XML (``share/VLP-16.xml`` and
  friends) the way VeloView does: ``distLSB_`` in cm, angles in degrees, distances and
  offsets in cm (stored here in metres); the number of lasers is the count of
  ``enabled_`` items equal to 1 (VeloView's rule), the model follows from it (16: VLP-16,
  32: HDL-32E) unless given; the decoder then checks it against the packets (identify.py).
  A missing, unreadable or malformed file, a laser count that is neither, or one that
  differs from the given model's raises ``CalibrationError`` naming the file.
- ``load_ros_yaml`` reads the ROS velodyne_pointcloud YAML (radians, metres) the same
  way; ``calibration_laser_count`` counts the lasers of either form for any model (the
  models decoded by velodyne_ext.py take the file as it is).
- ``default_calibration("VLP-16" | "HDL-32E")`` is the nominal table from the sensors'
  manuals (VLP-16: -15°..15° every 2°, interleaved; HDL-32E: -30.67°..10.67° every 4/3°,
  interleaved; Puck LITE = VLP-16; Puck Hi-Res: -10°..10° every 4/3°), no distance or
  offset corrections: what VeloView ships.

Corrections used by the decoder (VeloView's legacy model, per laser):

    vertical_deg          elevation of the beam
    rotational_deg        azimuth correction, subtracted from the firing azimuth
    distance_offset_m     added to every measured distance
    vertical_offset_m     height of the beam origin above the sensor origin
    horizontal_offset_m   sideways offset of the beam origin

``distCorrectionX_/Y_``, ``focalDistance_`` and ``focalSlope_`` (HDL-64 two-point distance
and intensity corrections) are read but unused: VLP-16 and HDL-32E files leave them at 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

logger = logging.getLogger("drivers.lidar.calibration")

SUPPORTED_MODELS = ("VLP-16", "Puck LITE", "Puck Hi-Res", "HDL-32E")
# the packet layout (firing timing, lasers per firing) each model shares
PACKET_LAYOUT = {"VLP-16": "VLP-16", "Puck LITE": "VLP-16", "Puck Hi-Res": "VLP-16", "HDL-32E": "HDL-32E"}
LASERS_PER_MODEL = {"VLP-16": 16, "Puck LITE": 16, "Puck Hi-Res": 16, "HDL-32E": 32}
DEFAULT_DISTANCE_RESOLUTION_M = 0.002

_VLP16_VERTICAL_DEG = [-15, 1, -13, 3, -11, 5, -9, 7, -7, 9, -5, 11, -3, 13, -1, 15]
_PUCK_HI_RES_VERTICAL_DEG = [-10.00, 0.67, -8.67, 2.00, -7.33, 3.33, -6.00, 4.67,
                             -4.67, 6.00, -3.33, 7.33, -2.00, 8.67, -0.67, 10.00]
_HDL32E_VERTICAL_DEG = [
    -30.67, -9.33, -29.33, -8.00, -28.00, -6.67, -26.67, -5.33,
    -25.33, -4.00, -24.00, -2.67, -22.67, -1.33, -21.33, 0.00,
    -20.00, 1.33, -18.67, 2.67, -17.33, 4.00, -16.00, 5.33,
    -14.67, 6.67, -13.33, 8.00, -12.00, 9.33, -10.67, 10.67,
]


class CalibrationError(ValueError):
    """A calibration file that cannot be used; names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Calibration:
    model: str
    vertical_deg: np.ndarray  # (lasers,) float64
    rotational_deg: np.ndarray
    distance_offset_m: np.ndarray
    vertical_offset_m: np.ndarray
    horizontal_offset_m: np.ndarray
    distance_resolution_m: float = DEFAULT_DISTANCE_RESOLUTION_M
    origin: str = "built-in"  # file path or "built-in"

    @property
    def num_lasers(self) -> int:
        return int(self.vertical_deg.shape[0])

    def __post_init__(self) -> None:
        if self.model not in SUPPORTED_MODELS:
            raise CalibrationError(
                f"{self.origin}: model {self.model!r} is not supported ({', '.join(SUPPORTED_MODELS)})")
        lasers = LASERS_PER_MODEL[self.model]
        for name in ("vertical_deg", "rotational_deg", "distance_offset_m", "vertical_offset_m", "horizontal_offset_m"):
            column = np.asarray(getattr(self, name), dtype=np.float64)
            if column.shape != (lasers,) or not np.all(np.isfinite(column)):
                raise CalibrationError(
                    f"{self.origin}: {name} must hold {lasers} finite values for a {self.model}, "
                    f"got shape {column.shape}"
                )
            column.setflags(write=False)
            object.__setattr__(self, name, column)
        if not (0 < self.distance_resolution_m < 1):
            raise CalibrationError(
                f"{self.origin}: distance resolution {self.distance_resolution_m} m is not plausible")


def default_calibration(model: str) -> Calibration:
    """The nominal table of a model (what VeloView ships for it)."""
    if model in ("VLP-16", "Puck LITE"):
        vertical = np.asarray(_VLP16_VERTICAL_DEG, np.float64)
    elif model == "Puck Hi-Res":
        vertical = np.asarray(_PUCK_HI_RES_VERTICAL_DEG, np.float64)
    elif model == "HDL-32E":
        vertical = np.asarray(_HDL32E_VERTICAL_DEG, np.float64)
    else:
        raise CalibrationError(f"no built-in calibration for model {model!r} (have: {', '.join(SUPPORTED_MODELS)})")
    zeros = np.zeros_like(vertical)
    return Calibration(model, vertical, zeros, zeros, zeros, zeros, DEFAULT_DISTANCE_RESOLUTION_M, f"built-in {model}")


def _number(element: ElementTree.Element | None, path: str, what: str) -> float:
    if element is None or element.text is None:
        raise CalibrationError(f"{path}: {what} is missing")
    try:
        return float(element.text.strip())
    except ValueError:
        raise CalibrationError(f"{path}: {what} is {element.text.strip()!r}, not a number") from None


def read_calibration_text(path: Path) -> str:
    """The text of a calibration / metadata file; ``CalibrationError`` naming it otherwise."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f"calibration file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CalibrationError(f"cannot read calibration file {path}: {reason}") from None


def _parse_xml(path: Path) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(read_calibration_text(path))
    except ElementTree.ParseError as exc:
        raise CalibrationError(f"calibration file {path} is not well-formed XML: {exc}") from None


def load_veloview_xml(path: str | os.PathLike[str], model: str | None = None) -> Calibration:
    """Read a VeloView calibration XML file (e.g. ``VLP-16.xml``)."""
    path = Path(path)
    root = _parse_xml(path)
    db = root.find("DB")
    if db is None:
        raise CalibrationError(f"{path} is not a VeloView calibration: no boost_serialization/DB element")

    distance_lsb = db.find("distLSB_")
    resolution_m = (_number(distance_lsb, str(path), "distLSB_") / 100.0 if distance_lsb is not None
                    else DEFAULT_DISTANCE_RESOLUTION_M)

    lasers: dict[int, dict[str, float]] = {}
    for px in db.iter("px"):
        laser_id = int(_number(px.find("id_"), str(path), "a laser's id_"))
        if laser_id in lasers:
            raise CalibrationError(f"{path}: laser id {laser_id} appears twice")
        lasers[laser_id] = {
            tag: (_number(px.find(tag), str(path), f"laser {laser_id} {tag}") if px.find(tag) is not None else 0.0)
            for tag in ("rotCorrection_", "vertCorrection_", "distCorrection_", "vertOffsetCorrection_",
                        "horizOffsetCorrection_")
        }
    if not lasers:
        raise CalibrationError(f"{path}: no laser corrections (points_/item/px) found")

    enabled = db.find("enabled_")
    if enabled is not None and enabled.findall("item"):
        count = sum(1 for item in enabled.findall("item") if (item.text or "").strip() == "1")
    else:
        count = len(lasers)
    if model is None:
        model = {16: "VLP-16", 32: "HDL-32E"}.get(count)
        if model is None:
            raise CalibrationError(
                f"{path}: {count} enabled lasers; only VLP-16 (16) and HDL-32E (32) are supported "
                "(pass model= to override)"
            )
    elif model not in SUPPORTED_MODELS:
        raise CalibrationError(f"{path}: model {model!r} is not supported ({', '.join(SUPPORTED_MODELS)})")
    elif count != LASERS_PER_MODEL[model]:
        raise CalibrationError(f"{path}: {count} enabled lasers, but a {model} has {LASERS_PER_MODEL[model]}: "
                               "the calibration is for another model")
    needed = LASERS_PER_MODEL[model]
    missing = [i for i in range(needed) if i not in lasers]
    if missing:
        raise CalibrationError(f"{path}: a {model} needs lasers 0..{needed - 1}; missing ids {missing[:8]}")

    def column(tag: str, scale: float = 1.0) -> np.ndarray:
        return np.asarray([lasers[i][tag] * scale for i in range(needed)], np.float64)

    return Calibration(
        model=model,
        vertical_deg=column("vertCorrection_"),
        rotational_deg=column("rotCorrection_"),
        distance_offset_m=column("distCorrection_", 0.01),
        vertical_offset_m=column("vertOffsetCorrection_", 0.01),
        horizontal_offset_m=column("horizOffsetCorrection_", 0.01),
        distance_resolution_m=resolution_m,
        origin=str(path),
    )


def _is_yaml(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


def _read_ros_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml  # PyYAML (the 'velodyne' extra): only for YAML calibration files
    except ImportError:
        raise CalibrationError(f"{path}: reading YAML calibrations needs the 'velodyne' extra (PyYAML)") from None
    text = read_calibration_text(path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(f"calibration file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("lasers"), list) or not document["lasers"]:
        raise CalibrationError(f"{path} is not a ROS velodyne calibration: no 'lasers' list")
    return document


def calibration_laser_count(path: str | os.PathLike[str]) -> int:
    """How many lasers a calibration file describes (VeloView XML: enabled ones; ROS YAML:
    its ``lasers`` entries), whatever the model: what the packets are checked against."""
    path = Path(path)
    if _is_yaml(path):
        return len(_read_ros_yaml(path)["lasers"])
    root = _parse_xml(path)
    enabled = root.findall("DB/enabled_/item")
    if enabled:
        return sum(1 for item in enabled if (item.text or "").strip() == "1")
    return len(root.findall("DB/points_/item"))


def load_ros_yaml(path: str | os.PathLike[str], model: str | None = None) -> Calibration:
    """Read a ROS velodyne_pointcloud YAML calibration (angles in radians, offsets in
    metres: ``lasers: [{laser_id, rot_correction, vert_correction, dist_correction,
    vert_offset_correction, horiz_offset_correction}]``, ``distance_resolution``)."""
    path = Path(path)
    document = _read_ros_yaml(path)
    lasers: dict[int, dict[str, Any]] = {}
    for entry in document["lasers"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("laser_id"), int):
            raise CalibrationError(f"{path}: a laser entry has no integer laser_id: {entry!r}")
        lasers[entry["laser_id"]] = entry
    count = len(lasers)
    if model is None:
        model = {16: "VLP-16", 32: "HDL-32E"}.get(count)
        if model is None:
            raise CalibrationError(f"{path}: {count} lasers; this decoder's models have 16 or 32")
    elif count != LASERS_PER_MODEL.get(model, -1):
        raise CalibrationError(f"{path}: {count} lasers, but a {model} has {LASERS_PER_MODEL.get(model)}")
    if sorted(lasers) != list(range(count)):
        raise CalibrationError(f"{path}: laser ids must be 0..{count - 1}")

    def column(key: str, scale: float = 1.0) -> np.ndarray:
        try:
            return np.asarray([float(lasers[i].get(key, 0.0)) * scale for i in range(count)], np.float64)
        except (TypeError, ValueError):
            raise CalibrationError(f"{path}: a laser's {key} is not a number") from None

    return Calibration(model=model, vertical_deg=column("vert_correction", 180 / np.pi),
                       rotational_deg=column("rot_correction", 180 / np.pi),
                       distance_offset_m=column("dist_correction"),
                       vertical_offset_m=column("vert_offset_correction"),
                       horizontal_offset_m=column("horiz_offset_correction"),
                       distance_resolution_m=float(document.get("distance_resolution", DEFAULT_DISTANCE_RESOLUTION_M)),
                       origin=str(path))


def resolve_calibration(calibration: Calibration | str | os.PathLike[str] | None,
                        model: str | None) -> Calibration | None:
    """A Calibration from what a caller passed: an object, a file path (VeloView XML, or
    ROS YAML by its .yaml/.yml suffix), or nothing (then the model's built-in table, or
    None when the model is not known yet either)."""
    if isinstance(calibration, Calibration):
        if model is not None and model != calibration.model:
            raise CalibrationError(f"calibration {calibration.origin} is for a {calibration.model}, not a {model}")
        return calibration
    if calibration is not None:
        return load_ros_yaml(calibration, model) if _is_yaml(calibration) else load_veloview_xml(calibration, model)
    return default_calibration(model) if model is not None else None


def read_ros_yaml_table(path: str | os.PathLike[str]) -> dict[str, object]:
    """A ROS velodyne YAML calibration as its parsed table (a ``lasers`` list checked), for a
    decoder that takes the table itself; ``CalibrationError`` naming the file otherwise."""
    return _read_ros_yaml(Path(path))
