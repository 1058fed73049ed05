"""The mirror's identity (data-directory epoch) and where each partition resumes.

Epoch file ``<data_dir>/.mirror/epoch.json``: ``{"epoch": "<32 hex>", "adopts_unmarked":
bool, "created_ns": int}``, written once by the mirror at its first start with the atomic
write recipe (temp, fsync, rename, fsync dir) and never changed. The epoch lives in the
data directory, so a replaced disk or a re-imaged computer (same vehicle id) has no epoch
file, gets a new epoch and ships everything it holds: the cloud copy of the old disk does
not count for it. ``adopts_unmarked`` is true when the epoch file was created in a data
directory the mirror had already shipped from (group ``_mirror`` has commits), i.e. an
upgrade from a mirror without epochs: records without an ``edge.epoch`` header then count
as this epoch's. A corrupt epoch file is an error naming the file, never silently replaced
(a new epoch ships everything again).

Resume point per partition (``choose_start``), from the destination's evidence (records of
this vehicle and epoch, edge/mirror/destination.py) and the local ``_mirror`` commit (only
ever advanced after Kafka committed the transaction, so it never exceeds what was shipped):
- the destination holds our records up to D and D >= local commit: D ("destination");
- otherwise, with a local commit L: L ("local"), either because the destination holds
  none of this epoch's records (emptied by retention or DeleteRecords), or our last record
  is beyond the scan bound, or the destination is behind L (its records were lost after
  Kafka acknowledged them: re-shipping would duplicate what survives elsewhere);
- no evidence at all: the local log start ("log_start", the first shipment of this epoch).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from broker.logs import log_event
from broker.storage.layout import atomic_write

from .destination import Identity, MirrorError, ResumeProbe

EPOCH_FILE = "epoch.json"
logger = logging.getLogger("edge.mirror")


def load_or_create_identity(state_dir: Path, vehicle: str, *, shipped_before: bool) -> tuple[Identity, bool]:
    """(identity, created now). ``shipped_before``: group ``_mirror`` has commits in this
    data directory (only consulted when the epoch file is created)."""
    path = state_dir / EPOCH_FILE
    try:
        body = json.loads(path.read_bytes())
        epoch, adopts = body["epoch"], body["adopts_unmarked"]
        if not (isinstance(epoch, str) and len(epoch) == 32 and isinstance(adopts, bool)):
            raise ValueError("epoch must be 32 hex digits, adopts_unmarked a boolean")
        int(epoch, 16)
        return Identity(vehicle, epoch, adopts), False
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise MirrorError(f"{path}: corrupt mirror epoch file ({exc}); deleting it starts a new epoch, which "
                          "ships every record held locally again") from None
    state_dir.mkdir(parents=True, exist_ok=True)
    identity = Identity(vehicle, uuid.uuid4().hex, shipped_before)
    atomic_write(path, json.dumps({"epoch": identity.epoch, "adopts_unmarked": shipped_before,
                                   "created_ns": time.time_ns()}).encode())
    return identity, True


@dataclass(frozen=True)
class Start:
    offset: int
    source: str  # "destination" | "local" | "log_start"
    reason: str


def choose_start(probe: ResumeProbe | None, local_commit: int | None, scan_limit: int) -> Start | None:
    """Where to resume one partition (None: from the local log start). The caller cuts the
    answer to the local log's [start, end] and counts what retention took."""
    found = probe.next_offset if probe is not None else None
    if found is not None and (local_commit is None or found >= local_commit):
        return Start(found, "destination", "the destination holds this epoch's records up to here")
    if local_commit is None:
        return None
    if found is not None:
        why = f"the destination's last record of this epoch is behind the local commit ({found} < {local_commit})"
    elif probe is not None and not probe.scanned_to_start:
        why = f"no record of this vehicle and epoch in the last {scan_limit} destination offsets (scan bound)"
    elif probe is not None and probe.high > probe.low:
        why = (f"the destination holds no record of this vehicle and epoch (offsets {probe.low}..{probe.high}): "
               "removed by retention or DeleteRecords")
    else:
        why = "the destination partition is empty (retention or DeleteRecords removed what was shipped)"
    return Start(local_commit, "local", why)


def resume_position(tp: tuple[str, int], start: int, end: int, probe: ResumeProbe | None, local_commit: int | None,
                    scan_limit: int, epoch: str) -> tuple[int, int | None]:
    """(where ``tp`` resumes, within the local log's [start, end]; the first offset retention
    deleted before it shipped, or None), logging a choice that is not the destination's."""
    chosen = choose_start(probe, local_commit, scan_limit)
    resume_at = start if chosen is None else chosen.offset
    if chosen is not None and chosen.source != "destination":
        log_event(logger, logging.WARNING, "mirror_resume_from_local", topic=tp[0], partition=tp[1],
                  offset=chosen.offset, reason=chosen.reason)
    if chosen is None and probe is not None and not probe.scanned_to_start:
        log_event(logger, logging.WARNING, "mirror_resume_from_log_start", topic=tp[0], partition=tp[1],
                  offset=start, reason=f"no local commit and none of this epoch's records in the last "
                  f"{scan_limit} destination offsets: records shipped before may ship again")
    if resume_at > end:
        log_event(logger, logging.ERROR, "mirror_resume_beyond_local_end", topic=tp[0], partition=tp[1],
                  resume=resume_at, local_end=end, epoch=epoch)
    if resume_at < start:
        return start, resume_at
    return min(resume_at, end), None
