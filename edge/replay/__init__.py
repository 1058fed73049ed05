"""Replay of recorded topics: read a window from the vehicle's broker or the cloud Kafka
copy, merge it by capture time and republish it at the recorded timing.

Parts (rosbag2's split): ``timespec`` (time arguments), ``sources`` (where records come
from), ``merge`` (capture-time merge), ``player`` (timing and control), ``sinks`` (where
they go), ``session`` (wiring, and ``run_replay`` for the API's jobs). Export
(edge.export) reads through the same ``sources``.
"""

from .errors import ReplayError, SinkError, SourceError
from .player import Player, ReplayOptions, ReplayStatus, check_speed
from .session import ReplaySession, prepare_replay, run_replay
from .sinks import BrokerSink, TopicNaming, parse_remap
from .sources import BrokerSource, KafkaSource, open_source
from .timespec import TimeSpecError, Window, WindowSpec, parse_window

__all__ = [
    "BrokerSink", "BrokerSource", "KafkaSource", "Player", "ReplayError", "ReplayOptions", "ReplaySession",
    "ReplayStatus", "SinkError", "SourceError", "TimeSpecError", "TopicNaming", "Window", "WindowSpec",
    "check_speed", "open_source", "parse_remap", "parse_window", "prepare_replay", "run_replay",
]
