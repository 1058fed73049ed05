"""The floor: small, dependency-free pieces every layer stands on (broker, drivers, edge).

Imports nothing of ours outside ``broker.base``, and only the standard library (import-linter
checks the first, pyproject.toml): ``sdnotify`` (systemd notify and watchdog), ``logs`` (the
one logging setup, ``event=NAME key=value`` lines), ``units`` (sizes and durations),
``timespec`` (the one grammar of time arguments) and ``names`` (every internal name: internal
topics and groups, header names, encodings).
"""
