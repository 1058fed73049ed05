"""TLS and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) for the Kafka listener (required for
any non-loopback bind unless ``--kafka-insecure``).

- TLS: a server certificate and key (PEM files); TLS 1.2 or newer. Connections are wrapped
  non-blocking and the handshake is driven by the broker loop (``listener.py``).
- SASL/PLAIN (Kafka's SaslHandshake v1 + SaslAuthenticate): users from a file of
  ``user:password`` lines (``#`` comments; the file should be mode 0600). Passwords are
  compared in constant time. Until a connection has authenticated, only ApiVersions,
  SaslHandshake and SaslAuthenticate are served; anything else closes it (as Kafka does).
- SASL/SCRAM-SHA-256 and -512 (``scram.py``): the same users file; each password is turned
  into salted SCRAM credentials when the file is loaded (only those are used by SCRAM).
- ``SaslSession`` is one connection's SASL state: the mechanism its SaslHandshake chose (PLAIN
  when a client authenticates without a handshake, as before SCRAM) and a SCRAM exchange
  under way. A failed authentication raises ``SaslFailed``, answered with
  SASL_AUTHENTICATION_FAILED and logged (user name only, never the password); the connection
  stays unauthenticated and a SCRAM exchange starts over.
"""

from __future__ import annotations

import hmac
import secrets
import ssl
from pathlib import Path

from .scram import SCRAM_SHA_256, SCRAM_SHA_512, ScramCredential, ScramError, ScramExchange, make_credentials

PLAIN = "PLAIN"
MECHANISMS = (PLAIN, SCRAM_SHA_256, SCRAM_SHA_512)
PLAIN_FAILED = "Authentication failed: invalid username or password"
SCRAM_FAILED = "Authentication failed during authentication due to invalid credentials with SASL mechanism {}"


class SecurityConfigError(ValueError):
    """A TLS or SASL file that cannot be used; names the file and the reason."""


def load_users(path: str | Path) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"Kafka SASL users file {path}: {exc}") from None
    users: dict[str, str] = {}
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SecurityConfigError(f"Kafka SASL users file {path} line {number}: expected user:password")
        users[user] = password
    if not users:
        raise SecurityConfigError(f"Kafka SASL users file {path}: no users")
    return users


def server_tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise SecurityConfigError(f"Kafka TLS certificate {cert} / key {key}: {exc}") from None
    return context


class KafkaSecurity:
    def __init__(self, tls: ssl.SSLContext | None, users: dict[str, str] | None):
        self.tls = tls
        self.users = users
        self._scram: dict[str, dict[str, ScramCredential]] = make_credentials(users) if users else {}
        self._unknown_user_secret = secrets.token_bytes(32)

    @property
    def mechanisms(self) -> list[str]:
        """The SASL mechanisms SaslHandshake offers (none without a users file)."""
        return list(MECHANISMS) if self.users is not None else []

    def scram_exchange(self, mechanism: str) -> ScramExchange:
        return ScramExchange(mechanism, self._scram.get(mechanism, {}), self._unknown_user_secret)

    @classmethod
    def from_files(cls, cert: str | Path | None = None, key: str | Path | None = None,
                   users_file: str | Path | None = None) -> KafkaSecurity:
        if (cert is None) != (key is None):
            raise SecurityConfigError("Kafka TLS needs both a certificate and a key file")
        tls = server_tls_context(cert, key) if cert and key is not None else None  # key is set when cert is
        return cls(tls, load_users(users_file) if users_file else None)

    @property
    def protects_remote_clients(self) -> bool:
        """TLS and SASL both: what a non-loopback bind requires."""
        return self.tls is not None and self.users is not None

    def check_plain(self, auth_bytes: bytes) -> str | None:
        """The authenticated user for a SASL/PLAIN message ``authzid NUL user NUL password``,
        or None."""
        parts = bytes(auth_bytes).split(b"\0")
        if self.users is None or len(parts) != 3:
            return None
        try:
            user, password = parts[1].decode(), parts[2].decode()
        except UnicodeDecodeError:
            return None
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return user


class SaslFailed(Exception):
    """An authentication that failed: ``message`` goes to the client, ``reason`` to the log."""

    def __init__(self, message: str, user: str, reason: str):
        super().__init__(message)
        self.message, self.user, self.reason = message, user, reason


class SaslSession:
    """One connection's SASL state (see the module docstring)."""

    def __init__(self, security: KafkaSecurity, mechanism: str = PLAIN):
        self.security = security
        self.mechanism = mechanism
        self._scram: ScramExchange | None = None

    def authenticate(self, auth_bytes: bytes) -> tuple[bytes, str | None]:
        """(bytes to answer, the user once authenticated, else None: another round follows).
        Raises SaslFailed."""
        if self.mechanism == PLAIN:
            user = self.security.check_plain(auth_bytes)
            if user is None:
                claimed = bytes(auth_bytes).split(b"\0")
                name = claimed[1].decode(errors="replace")[:100] if len(claimed) == 3 else "?"
                raise SaslFailed(PLAIN_FAILED, name, "invalid username or password")
            return b"", user
        exchange = self._scram or self.security.scram_exchange(self.mechanism)
        self._scram = None  # a failure, or the last round, ends the exchange: the next starts anew
        try:
            if not exchange.awaiting_final:
                answer = exchange.first(auth_bytes)
                self._scram = exchange
                return answer, None
            return exchange.final(auth_bytes), exchange.user
        except ScramError as exc:
            raise SaslFailed(SCRAM_FAILED.format(self.mechanism), (exchange.user or "?")[:100], str(exc)) from None
