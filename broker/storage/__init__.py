"""The storage engine: durable, partitioned, append-only logs on the local disk.

Public API (the server, the tests and the benchmarks use only this)::

    storage = Storage(data_dir, defaults=TopicConfig(), disk_guard=DiskGuard(...))
    storage.create_topic(name, config) / delete_topic(name) / configure_topic(name, overrides)
    storage.topics() -> {name: TopicConfig}
    log = storage.log(topic, partition)          # PartitionLog
    log.append(batch) -> AppendResult             # validates header + CRC, assigns offsets
    log.read(offset, max_bytes) -> bytes          # whole batches, served as stored
    log.log_start_offset / log.next_offset / log.durable_offset
    log.offset_for_time(ts_ns) -> int | None
    storage.flush_due() / storage.flush_all() / storage.enforce_retention()
    storage.set_protected_offset(topic, partition, offset)
    storage.close()                               # flush + clean-shutdown markers

Modules, one per on-disk thing (as Kafka's storage layer): ``layout`` (file names),
``index_file`` (what both sparse indexes share) with ``offset_index`` / ``time_index``,
``batch_chain`` (walking batch headers in a .log), ``segment`` (one .log file and its
indexes, their recovery), ``partition_log`` (the segments of one partition; recovery
tiers, producer state), ``retention`` (named deletion predicates, disk guard), ``engine``
(topics, partitions, flush scheduling).
"""

from .engine import AppendResult, DiskGuard, Storage
from .partition_log import PartitionLog

__all__ = ["AppendResult", "DiskGuard", "PartitionLog", "Storage"]
