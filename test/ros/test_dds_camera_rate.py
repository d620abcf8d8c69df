"""config/fastdds_large_images.xml delivers three 640x360 rgb8 cameras at their full rate into policy_node.

With Fast DDS's default 512 KiB shared-memory segment, one 691 KB frame does not fit and the cameras arrive at
a fraction of their rate (issue 10: 9.7 / 2.0 / 2.0 Hz; on this 2-core machine often none at all). The test
runs scripts/measure_dds_overhead.py (policy_node as its own process with an instant model stand-in, cameras
published at 10 Hz from another process) with the shipped profile; for the test the profile's UDP transport is
additionally bound to 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ros_graph import (
    REPO,
    loopback_profile,
    require_ros,
    ros_env_fixture,  # noqa: F401 (pytest fixtures)
)

require_ros()

pytestmark = pytest.mark.rclpy

PROFILE = REPO / "config" / "fastdds_large_images.xml"


def test_the_profile_is_valid_fast_dds_xml():
    import xml.etree.ElementTree as ET

    root = ET.parse(PROFILE).getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    sizes = [int(e.text) for e in root.iterfind(".//f:transport_descriptor/f:segment_size", ns)]
    assert sizes == [16 * 1024 * 1024]
    participant = root.find(".//f:participant", ns)
    assert participant.get("is_default_profile") == "true"


def test_three_raw_cameras_arrive_at_their_rate_with_the_profile(ros_env, tmp_path):
    env = {**os.environ, **ros_env, "FASTRTPS_DEFAULT_PROFILES_FILE": str(loopback_profile(tmp_path))}
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/measure_dds_overhead.py"), "--duration", "6", "--samples", "20",
         "--json", str(out)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    print(json.dumps(figures))
    # 10 Hz sent; the node's rate meter over its 5 s window. A busy shared CPU loses a few frames (8.6 Hz seen
    # under load); the default segment delivers 0-3.7 Hz here, so 7 Hz still tells the two apart.
    assert all(rate >= 7.0 for rate in figures["delivered_hz"].values()), figures
    assert figures["snapshots_submitted"] >= 30, figures
    assert figures["stamp_to_chunk_minus_model"]["n"] >= 15, figures
