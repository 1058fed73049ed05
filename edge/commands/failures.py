"""How a command's failure reaches the operator: one line on stderr and an exit status.

Invariants (checked by tests/cli/test_bad_input.py for every subcommand):
- exit status 2 for usage errors (a bad flag or value, a config that does not validate, a
  request the broker refuses as invalid), 1 for runtime failures (broker unreachable, disk
  full, a file that cannot be read or written, anything unexpected);
- exactly one line on stderr, ``edge COMMAND: what was wrong[: how to fix it]``, never a
  traceback; ``edge --debug COMMAND`` prints the traceback as well.
"""

from __future__ import annotations

import re
import sys
import traceback
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # pydantic loads only when a failure is described
    from pydantic import ValidationError

USAGE = 2
RUNTIME = 1

UNREACHABLE_HINT = "is the broker running (`edge up` or `edge broker`)? give --endpoint or set $EDGE_ENDPOINT"


class UsageError(ValueError):
    """A flag or value the operator gave is not usable; the message says which and what would be."""


PYDANTIC_DETAIL = re.compile(r"\s*\[type=[^\]]*\]")


def one_line(text: str) -> str:
    """A multi-line message (pydantic's dump, a broker reply) folded into one line."""
    lines = [PYDANTIC_DETAIL.sub("", line).strip() for line in str(text).splitlines()]
    kept = [line for line in lines if line and not line.startswith("For further information")]
    return "; ".join(kept) if kept else str(text).strip() or "failed"


def pydantic_line(exc: ValidationError) -> str:
    """One line for a pydantic ValidationError: ``field: reason`` per error, no URLs, no types."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "value"
        if error.get("type") == "extra_forbidden":
            parts.append(f"unknown setting {where!r}")
        else:
            parts.append(f"{where}: {error.get('msg', 'invalid').removeprefix('Value error, ')}")
    return "; ".join(parts)


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit status, message) for an exception a command raised."""
    from broker.errors import BrokerError, BrokerUnavailableError, DiskFullError

    if isinstance(exc, UsageError):
        return USAGE, one_line(str(exc))
    if isinstance(exc, BrokerUnavailableError):
        message = one_line(exc.message)
        if type(exc) is BrokerUnavailableError:
            message = f"{message}: {UNREACHABLE_HINT}"
        return RUNTIME, message
    if isinstance(exc, DiskFullError):
        return RUNTIME, one_line(exc.message)
    if isinstance(exc, BrokerError):
        return USAGE, one_line(exc.message)
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a core dependency
        pass
    else:
        if isinstance(exc, ValidationError):
            return USAGE, f"invalid {exc.title}: {pydantic_line(exc)}"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        return RUNTIME, f"cannot use{where}: {reason}" if where else one_line(reason)
    return RUNTIME, (f"unexpected {type(exc).__name__}: {one_line(str(exc))} "
                     "(run `edge --debug ...` for the traceback and report it)")


def report(command: str, exc: BaseException, *, debug: bool, stream: TextIO | None = None) -> int:
    """Print the one line for ``exc`` (and its traceback with ``debug``); return the exit status."""
    stream = stream if stream is not None else sys.stderr
    status, message = describe(exc)
    if debug:
        traceback.print_exception(exc, file=stream)
    print(f"edge {command}: {message}", file=stream)
    return status
