"""What every camera source yields, the errors it raises, and the base of the sources.

Owns: ``CameraFrame`` (one BGR image stamped with its capture time), the typed errors of
the camera sources, and ``CameraSource`` (the iterator protocol every source follows:
``close()``, a context manager, a ``name`` that every error message starts with).
Imports no OpenCV, so code that only needs to catch camera errors stays light.

The errors subclass the driver runtime's ``SensorError``, so the runtime reports them
(``sensor_lost``) and retries; ``error.retryable`` tells the two kinds apart:

- ``CameraInputError`` (``retryable = False``): a bad input that retrying will not fix —
  a missing file, a directory, an unreadable or corrupt video, a file with no frames.
- ``CameraUnavailableError`` (``retryable = True``): a live source (V4L2 device, network
  stream) that cannot be opened now or stopped delivering frames: "sensor gone". Open it
  again (or call ``reopen()``) after a backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from drivers.runtime import SensorError


@dataclass(slots=True, eq=False)
class CameraFrame:
    """One captured image.

    ``capture_ns``: nanoseconds since the Unix epoch (host clock at capture, or the file
    position on a fixed epoch with ``keep_timestamps``). ``image``: HxWx3 uint8 BGR, owned
    by this frame (sources never reuse the buffer, so frames may be queued). ``seq``:
    per-source frame counter from 0, continuing across loops and ``reopen()``.
    ``source_ts_ns``: the source's own time for the frame when it has one (a file's
    position, a device's or stream's timestamp), in that source's time base; else None.
    """

    capture_ns: int
    image: np.ndarray
    seq: int
    source_ts_ns: int | None = None


class CameraSourceError(SensorError):
    """A camera source failed; the message names the source and what was wrong."""

    retryable = True

    def __init__(self, source: str, problem: str):
        super().__init__(f"camera {source}: {problem}")
        self.source = source
        self.problem = problem


class CameraInputError(CameraSourceError):
    """Bad input (missing, unreadable or corrupt file): retrying will not help."""

    retryable = False


class CameraUnavailableError(CameraSourceError):
    """A live device or stream cannot be opened, or stopped delivering frames."""

    retryable = True


FrameT = TypeVar("FrameT")  # CameraFrame; a pass-through source's EncodedFrame (passthrough.py)


class CameraSource(Generic[FrameT]):
    """Base of the camera sources: an iterator of ``CameraFrame``.

    Subclasses implement ``__next__``. ``close()`` may be called from any thread: it ends
    the iteration (a sleeping source wakes at once) and releases the device or file. The
    optional ``stop`` event given to a source ends the iteration the same way (checked at
    least every 50 ms while the source sleeps) without releasing anything.
    """

    name: str = "camera"

    def __init__(self, stop: threading.Event | None = None):
        self._stop_requested = stop if stop is not None else threading.Event()
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[FrameT]:
        return self

    def __next__(self) -> FrameT:  # pragma: no cover - every source overrides it
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _should_stop(self) -> bool:
        return self._closed.is_set() or self._stop_requested.is_set()

    def __enter__(self) -> CameraSource[FrameT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
