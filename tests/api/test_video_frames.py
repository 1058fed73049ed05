"""The dashboard's newest frame of an H.264 topic (records as the camera pass-through
stores them: drivers/camera/passthrough.py): decoded from the last keyframe, then forward."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from broker.client import Admin, Producer
from drivers.camera.passthrough import encode_passthrough
from drivers.camera.sources import open_camera_source


@pytest.fixture(scope="module")
def footage_frames(shared_data):
    """(records, decoded reference images) of the first 130 frames of the real footage."""
    path = shared_data / "car-detection.mp4"
    with open_camera_source(path, rate="max", passthrough=True) as source:
        records = [encode_passthrough(frame) for _, frame in zip(range(130), source, strict=False)]  # the first 130
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(130), container.decode(video=0), strict=False)]
    return records, images


def _produce(endpoint, topic, records, start):
    with Producer(endpoint, linger_ms=0) as producer:
        futures = [producer.send(topic, bytes(value), headers=headers, partition=0, timestamp_ns=start + i)
                   for i, (value, headers) in enumerate(records)]
        return [f.result(10).offset for f in futures]


def _latest(api_env, topic):
    resp = api_env.get(f"/api/topics/{topic}/latest.jpg")
    assert resp.status_code == 200, resp.text
    return int(resp.headers["x-edge-offset"]), cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)


def test_latest_frame_of_an_h264_topic(api_env, footage_frames):
    records, images = footage_frames
    keyframes = [i for i, (_v, h) in enumerate(records) if h["keyframe"] == "1"]
    assert keyframes[0] == 0 and len(keyframes) >= 2
    middle = keyframes[1] + 7  # the newest record is a delta frame, seven after a keyframe
    with Admin(api_env.endpoint) as admin:
        admin.create_topic("camera.h264", 1, if_not_exists=True)
    _produce(api_env.endpoint, "camera.h264", records[:middle + 1], 1_000)
    offset, image = _latest(api_env, "camera.h264")
    assert offset == middle and image.shape == (432, 768, 3)
    assert _closest(image, images) == middle  # that frame, not the keyframe, a neighbour or garbage
    _produce(api_env.endpoint, "camera.h264", records[middle + 1:middle + 4], 2_000)  # then decoded forward
    offset, image = _latest(api_env, "camera.h264")
    assert offset == middle + 3
    assert _closest(image, images) == middle + 3


def _closest(image, images):
    errors = [np.abs(image.astype(int) - reference).mean() for reference in images]
    assert min(errors) < 3, min(errors)
    return int(np.argmin(errors))
