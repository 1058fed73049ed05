"""Export of recorded topics for offline tools: an MCAP file Foxglove opens natively, or a
directory of MP4 videos (cameras) and PCD/PLY files (LiDAR).

Parts: ``core`` (planning, streaming, counts, ``run_export`` for the API's jobs),
``mcap_file`` (foxglove protobuf messages), ``directory`` (videos and cloud files),
``atomic`` (publish-by-rename outputs), ``kinds`` (what a record is), ``errors``.
Records are read through edge.replay.sources, so an export reads the vehicle's broker or
the cloud Kafka copy alike.

Guarantees (see each module): streaming with bounded memory, nothing under the final
name unless the export completed, corrupt records skipped and counted, typed errors.
Heavy libraries (mcap/protobuf, OpenCV, open3d) are imported only by the writer that
needs them.
"""

from .atomic import AtomicOutput
from .core import (
                   API_FORMATS,
                   FORMATS,
                   ExportPlan,
                   export_window,
                   flatten_for_download,
                   infer_format,
                   plan_export,
                   run_export,
)
from .errors import ExportCancelled, ExportError

__all__ = [
                   "API_FORMATS",
                   "FORMATS",
                   "AtomicOutput",
                   "ExportCancelled",
                   "ExportError",
                   "ExportPlan",
                   "export_window",
                   "flatten_for_download",
                   "infer_format",
                   "plan_export",
                   "run_export",
]
