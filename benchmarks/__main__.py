"""``python -m benchmarks``: the appliance's broker side by side with Apache Kafka, NATS JetStream
and the disk, on the same machine, in the same run, on the same payloads (see harness.py)."""

import sys

from .harness import main

if __name__ == "__main__":
    sys.exit(main())
