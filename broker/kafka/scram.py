"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 for the Kafka listener (RFC 5802 / RFC 7677, as
Kafka's ScramSaslServer implements them: no channel binding, gs2 header ``n,,``).

Credentials: the users file holds plain ``user:password`` lines (PLAIN needs the password
itself), so every user's SCRAM credential is derived at load, once per mechanism: a random
16-byte salt, ``ITERATIONS`` rounds of PBKDF2-HMAC (Kafka's minimum, 4096), and only the
StoredKey and ServerKey are kept for SCRAM (the salted password is dropped). Salts are new
at every start; clients never cache them.

One exchange per connection, two SaslAuthenticate rounds:
1. client-first ``n,,n=<user>,r=<client nonce>`` -> server-first
   ``r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>``;
2. client-final ``c=biws,r=<nonce>,p=<proof b64>`` -> server-final ``v=<server signature b64>``.

Invariants: the proof is checked in constant time; an unknown user gets a server-first
message like a known one (a salt derived from the name with a per-start secret), so the
first round never tells whether a user exists: both fail alike at the proof. Any
malformed message, a nonce or channel-binding mismatch, token authentication (not
supported) or a wrong proof raises ``ScramError``; the listener answers it with
SASL_AUTHENTICATION_FAILED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_512 = "SCRAM-SHA-512"
HASHES = {SCRAM_SHA_256: "sha256", SCRAM_SHA_512: "sha512"}
ITERATIONS = 4096  # Kafka refuses fewer for both mechanisms
SALT_BYTES = 16
NONCE_BYTES = 24
GS2_HEADER = "n,,"  # no channel binding, no authorization identity


class ScramError(ValueError):
    """A SCRAM exchange that cannot succeed; the message says why (never a password)."""


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def make_credential(mechanism: str, password: str, salt: bytes | None = None,
                    iterations: int = ITERATIONS) -> ScramCredential:
    """The credential a server keeps for ``password`` (RFC 5802 section 3)."""
    digest = HASHES[mechanism]
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", digest)
    return ScramCredential(salt, iterations, hashlib.new(digest, client_key).digest(),
                           hmac.digest(salted, b"Server Key", digest))


def make_credentials(users: dict[str, str]) -> dict[str, dict[str, ScramCredential]]:
    """mechanism -> user -> credential, for every user of a PLAIN users map."""
    return {mechanism: {user: make_credential(mechanism, password) for user, password in users.items()}
            for mechanism in HASHES}


def _attributes(message: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for part in message.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ScramError(f"malformed SCRAM attribute {part[:40]!r}")
        pairs.append((name, value))
    return pairs


def _username(raw: str) -> str:
    """RFC 5802 saslname: ``=2C`` is a comma, ``=3D`` an equals sign; any other ``=`` is an error."""
    if raw.replace("=2C", "").replace("=3D", "").count("="):
        raise ScramError("malformed SCRAM user name")
    return raw.replace("=2C", ",").replace("=3D", "=")


class ScramExchange:
    """The server side of one SCRAM authentication (``first`` then ``final``)."""

    def __init__(self, mechanism: str, credentials: dict[str, ScramCredential], unknown_user_secret: bytes):
        self.mechanism = mechanism
        self._digest = HASHES[mechanism]
        self._credentials = credentials
        self._unknown_user_secret = unknown_user_secret
        self.user: str | None = None  # the name the client claimed (for logs), once known
        self._credential: ScramCredential | None = None
        self._nonce = ""
        self._auth_prefix = ""  # client-first-bare + "," + server-first

    @property
    def awaiting_final(self) -> bool:
        """The first round is done: the next message is the client-final one."""
        return self._credential is not None

    def first(self, message: bytes) -> bytes:
        """client-first -> server-first."""
        text = _decode(message)
        if not text.startswith(GS2_HEADER):
            raise ScramError("SCRAM client-first message must start with 'n,,' (no channel binding, no authzid)")
        bare = text[len(GS2_HEADER):]
        pairs = _attributes(bare)
        if len(pairs) < 2 or pairs[0][0] != "n" or pairs[1][0] != "r" or not pairs[1][1]:
            raise ScramError("SCRAM client-first message must be n=<user>,r=<nonce>")
        if any(name == "tokenauth" and value.lower() == "true" for name, value in pairs[2:]):
            raise ScramError("SCRAM delegation-token authentication is not supported")
        self.user = _username(pairs[0][1])
        credential = self._credentials.get(self.user)
        if credential is None:  # answer alike; the proof check fails for it
            salt = hmac.digest(self._unknown_user_secret, self.user.encode(), "sha256")[:SALT_BYTES]
            credential = ScramCredential(salt, ITERATIONS, b"", b"")
        self._credential = credential
        self._nonce = pairs[1][1] + server_nonce()
        server_first = f"r={self._nonce},s={base64.b64encode(credential.salt).decode()},i={credential.iterations}"
        self._auth_prefix = f"{bare},{server_first}"
        return server_first.encode()

    def final(self, message: bytes) -> bytes:
        """client-final -> server-final; raises ScramError unless the proof is right."""
        if self._credential is None:
            raise ScramError("SCRAM client-final message before the client-first message")
        text = _decode(message)
        without_proof, sep, proof_part = text.rpartition(",p=")
        pairs = _attributes(without_proof) if sep else []
        if len(pairs) < 2 or pairs[0][0] != "c" or pairs[1][0] != "r":
            raise ScramError("SCRAM client-final message must be c=<binding>,r=<nonce>,p=<proof>")
        if pairs[0][1] != base64.b64encode(GS2_HEADER.encode()).decode():
            raise ScramError("SCRAM channel binding does not match the client-first message")
        if pairs[1][1] != self._nonce:
            raise ScramError("SCRAM nonce does not match the server's")
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise ScramError("SCRAM proof is not base64") from None
        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        credential = self._credential
        signature = hmac.digest(credential.stored_key, auth_message, self._digest)
        if len(proof) != len(signature):
            raise ScramError("invalid credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not credential.stored_key or not hmac.compare_digest(hashlib.new(self._digest, client_key).digest(),
                                                                credential.stored_key):
            raise ScramError("invalid credentials")
        server_signature = hmac.digest(credential.server_key, auth_message, self._digest)
        return b"v=" + base64.b64encode(server_signature)


def server_nonce() -> str:
    """The server's half of an exchange's nonce (printable, no comma: base64)."""
    return base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()


def _decode(message: bytes) -> str:
    try:
        return bytes(message).decode()
    except UnicodeDecodeError:
        raise ScramError("SCRAM message is not UTF-8") from None
