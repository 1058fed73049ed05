"""Camera sources and frame encodings; OpenCV is imported only inside this package.

- ``frame.py``: ``CameraFrame``, the typed errors, the ``CameraSource`` base (no OpenCV);
- ``sources.py``: ``open_camera_source`` and the file / live sources;
- ``sim.py``: the synthetic camera; ``pacing.py``: drift-free frame pacing;
- ``encoding.py``: ``encode_frame`` / ``decode_frame`` (JPEG, PNG, raw BGR);
- ``passthrough.py``: ``PassthroughSource``, the camera's own H.264/H.265/MJPEG, not decoded;
- ``video.py``: the H.264/H.265 record format (``keyframe`` header) and ``VideoDecoder``;
- ``container.py``: a file's recorded start (``creation_time``), via PyAV.

Nothing is imported here, so ``import drivers.camera`` alone does not load OpenCV.
"""
