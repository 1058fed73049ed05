"""Real LiDAR captures beyond ../shared/data's VLP-16: an HDL-32E cut of VeloView's Monterey
sample and two Ouster captures from ouster-sdk's repository (sources, licences and the
reference values in docs/LIDAR.md, "Test captures").

They are not committed: the project keeps data files fetched from other repositories out of
this one (they belong in the steering repo's shared/data). Tests look for them in
``$EDGE_LIDAR_CAPTURES``, else ``../shared/data/lidar``, and a test that needs one that is
absent is skipped with the missing path named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

CAPTURES = Path(os.environ.get("EDGE_LIDAR_CAPTURES", SHARED_DATA / "lidar"))
HDL32E_CAPTURE = CAPTURES / "hdl32e-monterey-frame8.pcap"
HDL32E_CALIBRATION = CAPTURES / "HDL-32.xml"
OUSTER = CAPTURES / "ouster"
OUSTER_LEGACY = OUSTER / "OS-2-32-U0_v2.0.0_1024x10"  # + .pcap / .json
OUSTER_DUAL = OUSTER / "OS-0-32-U1_v2.2.0_1024x10"


def needs(*paths: Path) -> pytest.MarkDecorator:
    """Skip unless every path exists (a capture base name stands for its .pcap and .json)."""
    missing = []
    for path in paths:
        wanted = ([path] if path.suffix in (".pcap", ".xml", ".json", ".yaml")
                  else [path.with_name(path.name + ".pcap"), path.with_name(path.name + ".json")])
        missing += [str(p) for p in wanted if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real capture not present: {', '.join(missing)} "
                              "(docs/LIDAR.md 'Test captures' says where it comes from; set EDGE_LIDAR_CAPTURES)")


HDL32E = needs(HDL32E_CAPTURE, HDL32E_CALIBRATION)
OUSTER_BOTH = needs(OUSTER_LEGACY, OUSTER_DUAL)

# tier4/nebula's decoder regression data (rosbag2 of VelodyneScan + nebula's own output as PCD)
NEBULA = CAPTURES / "nebula"
NEBULA_VLP16_DUAL_BAG = NEBULA / "vlp16/1673400471837873222/1673400471837873222_0.db3"
NEBULA_VLP16_DUAL_PCD = NEBULA / "vlp16/1673400472138016708.pcd"
NEBULA_VLP32C_BAG = NEBULA / "vlp32/1713492677464078412/1713492677464078412_0.db3"
NEBULA_VLP32C_PCD = NEBULA / "vlp32/1713492677464078412.pcd"
NEBULA_VLP32C_CALIBRATION = NEBULA / "VLP32.yaml"
NEBULA_VLS128_BAG = NEBULA / "vls128/1614315746471294674/1614315746471294674_0.db3"
NEBULA_VLS128_PCD = NEBULA / "vls128/1585897255376374245.pcd"
NEBULA_VLS128_CALIBRATION = NEBULA / "VLS128.yaml"


def needs_files(*paths: Path) -> pytest.MarkDecorator:
    """Skip unless every one of these files exists (names as given: bags, PCD files)."""
    missing = [str(path) for path in paths if not path.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real capture not present: {', '.join(missing)} "
                              "(docs/LIDAR.md 'Test captures' says where it comes from; set EDGE_LIDAR_CAPTURES)")


NEBULA_VLP16_DUAL = needs_files(NEBULA_VLP16_DUAL_BAG, NEBULA_VLP16_DUAL_PCD)
NEBULA_VLP32C = needs_files(NEBULA_VLP32C_BAG, NEBULA_VLP32C_PCD, NEBULA_VLP32C_CALIBRATION)
NEBULA_VLS128 = needs_files(NEBULA_VLS128_BAG, NEBULA_VLS128_PCD, NEBULA_VLS128_CALIBRATION)
