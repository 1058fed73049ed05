"""A real broker process for tests: started with ``edge broker``, stopped or killed for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from broker.client import Admin
from broker.errors import BrokerError

EDGE = str(Path(sys.executable).parent / "edge")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    def __init__(self, data_dir: Path, endpoint: str | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, fd_limit: int | None = None):
        """``fd_limit``: run the broker with RLIMIT_NOFILE (soft and hard) at this value."""
        self.data_dir = Path(data_dir)
        self.endpoint = endpoint or f"ipc://{self.data_dir}/broker.sock"
        self.extra_args = extra_args or []
        self.env = env or {}
        self.fd_limit = fd_limit
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [EDGE, "broker", "--data-dir", str(self.data_dir), "--endpoint", self.endpoint, *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                preexec_fn=None if self.fd_limit is None else self._limit_fds,  # noqa: PLW1509 - only setrlimit
            )
        deadline = time.monotonic() + timeout
        # an ipc endpoint: wait for its socket file first (polled every 10 ms); a ping before the
        # broker binds waits out its whole timeout, which cost ~0.5 s of every start
        socket_file = Path(self.endpoint[len("ipc://"):]) if self.endpoint.startswith("ipc://") else None
        while socket_file is not None and not socket_file.exists() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.01)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Admin(self.endpoint, timeout_s=0.5) as admin:
                    admin.ping()
                return self
            except BrokerError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker not ready after {timeout}s:\n{self.log()}") from None
                time.sleep(0.05)

    def _limit_fds(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
