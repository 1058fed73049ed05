"""The floor: small, dependency-free pieces every layer stands on (broker, drivers, edge).

Imports nothing of ours outside ``broker.base`` (import-linter checks it): sd_notify, and the
shared vocabulary as it moves here.
"""
