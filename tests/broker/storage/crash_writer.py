"""A writer process for crash tests: appends batches and prints each durable offset.

Run as ``python -m tests.broker.storage.crash_writer DATA_DIR FLUSH``; every line on stdout
is ``<base> <count>`` printed only after the append returned durable (fsynced), so the
parent knows exactly what was acknowledged before it SIGKILLs this process.
"""

from __future__ import annotations

import random
import sys

from broker.storage import Storage
from broker.topic_config import TopicConfig

from .helpers import make_batch


def main() -> None:
    data_dir, flush = sys.argv[1], sys.argv[2]
    storage = Storage(data_dir)
    if not storage.has_topic("crash"):
        storage.create_topic("crash", TopicConfig(partitions=2, segment_bytes=64 * 1024, flush=flush,
                                                  index_interval_bytes=512))
    rng = random.Random()
    while True:
        partition = rng.randrange(2)
        log = storage.log("crash", partition)
        count = rng.randint(1, 20)
        result = log.append(make_batch(log.next_offset, count, size=rng.randint(10, 3000)))
        if not result.durable:
            log.flush()
        sys.stdout.write(f"{partition} {result.base_offset} {count}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
