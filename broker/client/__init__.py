"""The client library every part of the appliance uses to talk to the broker.

    from broker.client import Producer, Consumer, Admin

Producer (batching, partitioning, bounded buffer, delivery futures), Consumer (assign or
group subscribe, seek by offset/time, poll, commit; OffsetReset: what it reports when its
position is no longer in the log), Admin (topics, offsets, groups).
"""

from .admin import Admin
from .connection import Connection
from .consumer import Consumer
from .producer import DeliveryResult, Producer
from .resets import RESET_POLICIES, OffsetReset

__all__ = ["RESET_POLICIES", "Admin", "Connection", "Consumer", "DeliveryResult", "OffsetReset", "Producer"]
