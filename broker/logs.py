"""Structured, one-line-per-event logging: ``event=name key=value ...``.

Every process logs through ``log_event`` so that one grep or one parser reads all of them;
values with spaces are quoted. ``setup_logging`` configures the root logger once.
"""

from __future__ import annotations

import logging
import sys

_SECRET_KEYS = ("password", "secret", "token", "sasl.password", "api_key")


def is_secret_key(key: str) -> bool:
    """Whether a setting or log field named ``key`` holds a secret (its value is never shown)."""
    return any(s in key.lower() for s in _SECRET_KEYS)


def _format_value(key: str, value: object) -> str:
    if is_secret_key(key):
        return "***"
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(event: str, **fields: object) -> str:
    return " ".join([f"event={event}", *(f"{k}={_format_value(k, v)}" for k, v in fields.items())])


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, **fields))


def setup_logging(level: str | int = "INFO", process: str = "edge") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s level=%(levelname)s process={process} logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
