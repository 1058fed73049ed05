"""Camera sources and frame encodings; OpenCV is imported only inside this package.

- ``frame.py``: ``CameraFrame``, the typed errors, the ``CameraSource`` base (no OpenCV);
- ``sources.py``: ``open_camera_source`` and the file / live sources;
- ``sim.py``: the synthetic camera; ``pacing.py``: drift-free frame pacing;
- ``encoding.py``: ``encode_frame`` / ``decode_frame`` (JPEG, PNG, raw BGR).

Nothing is imported here, so ``import drivers.camera`` alone does not load OpenCV.
"""
