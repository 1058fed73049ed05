"""ZeroMQ CURVE for the broker's tcp endpoint: key files, the server's authenticator, the
client's keys.

Keys are ZeroMQ certificate files as ``zmq.auth.create_certificates`` writes them (and
``edge keys`` wraps): ``NAME.key`` holds a public key, ``NAME.key_secret`` the public and
the secret key. The broker holds its own ``.key_secret`` and a directory of the public
``.key`` files of the clients it accepts; a client holds its ``.key_secret`` and the
broker's public ``.key``.

Guarantees:
- A broker with CURVE encrypts every tcp connection and accepts only clients whose public
  key is in the authorized directory: any other client (another key, no key, a wrong
  server key) fails the handshake and never reaches the request loop.
- A client whose handshake is refused gets ``BrokerAuthError`` naming the endpoint and
  what to check, not a generic "not reachable".
- Missing or unreadable key files, a directory without any client key, or a libzmq built
  without CURVE fail at start-up with ``CurveError`` naming the file.
- ipc endpoints never use CURVE: their protection is the socket file's mode (0660).
- Clients find their keys in ``$EDGE_CURVE_CLIENT_KEY`` (their ``.key_secret``) and
  ``$EDGE_CURVE_SERVER_KEY`` (the broker's ``.key``) unless given explicitly; ``edge``
  commands set both from the config's ``[broker.curve]`` client keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from .errors import BrokerError

if TYPE_CHECKING:  # imported where it starts: the authenticator thread is needed only with CURVE
    from zmq.auth.thread import ThreadAuthenticator

ZAP_DOMAIN = "edge"
CLIENT_KEY_ENV = "EDGE_CURVE_CLIENT_KEY"
SERVER_KEY_ENV = "EDGE_CURVE_SERVER_KEY"


class CurveError(BrokerError):
    """CURVE cannot be set up: a key file is missing or invalid, or libzmq lacks CURVE."""


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise CurveError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE support")


def load_key_file(path: Path | str, *, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) keys of a certificate file; ``secret`` requires the secret key."""
    _require_curve()
    import zmq.auth

    path = Path(path)
    if not path.is_file():
        raise CurveError(f"CURVE key file {path} does not exist")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveError(f"CURVE key file {path} is not a ZeroMQ certificate: {exc}") from None
    if len(public) != 40 or (secret and (not secret_key or len(secret_key) != 40)):
        what = "a secret key (the .key_secret file)" if secret else "a public key"
        raise CurveError(f"CURVE key file {path} does not hold {what}")
    return public, secret_key


@dataclass(frozen=True)
class ClientCurve:
    """A client's keys: its own pair and the broker's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, client_secret_file: Path | str, server_public_file: Path | str) -> ClientCurve:
        public, secret = load_key_file(client_secret_file, secret=True)
        server_public, _ = load_key_file(server_public_file, secret=False)
        return cls(public, secret or b"", server_public)

    @classmethod
    def from_env(cls) -> ClientCurve | None:
        client, server = os.environ.get(CLIENT_KEY_ENV), os.environ.get(SERVER_KEY_ENV)
        if not client and not server:
            return None
        if not (client and server):
            missing = SERVER_KEY_ENV if client else CLIENT_KEY_ENV
            raise CurveError(f"${missing} is not set: CURVE needs both ${CLIENT_KEY_ENV} and ${SERVER_KEY_ENV}")
        return cls.from_files(client, server)

    def apply(self, socket: zmq.Socket[object]) -> None:
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.curve_serverkey = self.server_public


class ServerCurve:
    """The broker's side: its key pair and the authenticator of client keys."""

    def __init__(self, server_secret_file: Path | str, authorized_dir: Path | str):
        self.public, secret = load_key_file(server_secret_file, secret=True)
        self.secret = secret or b""
        self.authorized_dir = Path(authorized_dir)
        if not self.authorized_dir.is_dir():
            raise CurveError(f"CURVE authorized-clients directory {self.authorized_dir} does not exist")
        keys = sorted(self.authorized_dir.glob("*.key"))
        if not keys:
            raise CurveError(f"CURVE authorized-clients directory {self.authorized_dir} holds no .key file: "
                             "no client could connect")
        for key in keys:
            load_key_file(key, secret=False)
        self.clients = len(keys)
        self._auth: ThreadAuthenticator | None = None

    def start(self, context: zmq.Context[zmq.Socket[object]]) -> None:
        """Start the ZAP authenticator: only the authorized public keys pass the handshake."""
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN, location=str(self.authorized_dir))
        self._auth = auth

    def apply(self, socket: zmq.Socket[object]) -> None:
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.zap_domain = ZAP_DOMAIN.encode()

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def create_key_pair(directory: Path | str, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) into ``directory``."""
    _require_curve()
    import zmq.auth

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def is_loopback_tcp(endpoint: str) -> bool:
    """Whether a ``tcp://HOST:PORT`` endpoint binds only the loopback interface."""
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")
