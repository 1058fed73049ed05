"""SCRAM server exchange (broker/kafka/scram.py) against RFC 7677's SCRAM-SHA-256 example and
RFC 5802's rules: a right proof gets the server signature, anything else is refused
(wrong password, unknown user, wrong nonce, channel binding, token auth, malformed)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from broker.kafka import scram
from broker.kafka.scram import SCRAM_SHA_256, SCRAM_SHA_512, ScramError, ScramExchange, make_credential
from broker.kafka.security import KafkaSecurity, SaslFailed, SaslSession

# RFC 7677 section 3
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


@pytest.fixture
def rfc_exchange(monkeypatch) -> ScramExchange:
    monkeypatch.setattr(scram, "server_nonce", lambda: RFC_SERVER_NONCE)
    credential = make_credential(SCRAM_SHA_256, "pencil", salt=RFC_SALT)
    return ScramExchange(SCRAM_SHA_256, {"user": credential}, b"secret")


def test_rfc7677_example_exchange(rfc_exchange):
    assert rfc_exchange.first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert rfc_exchange.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert rfc_exchange.user == "user"


@pytest.mark.parametrize(("client_final", "reason"), [
    (RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"), "invalid credentials"),
    (RFC_CLIENT_FINAL.replace(b"k0,p", b"k1,p"), "nonce"),
    (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), "channel binding"),
    (RFC_CLIENT_FINAL.split(b",p=")[0], "must be c="),
    (RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=!!"), "base64"),
    (b"\xff", "UTF-8"),
])
def test_bad_client_final_is_refused(rfc_exchange, client_final, reason):
    rfc_exchange.first(RFC_CLIENT_FIRST)
    with pytest.raises(ScramError, match=reason):
        rfc_exchange.final(client_final)


@pytest.mark.parametrize(("client_first", "reason"), [
    (b"y,,n=user,r=abc", "must start with 'n,,'"),
    (b"n,a=other,n=user,r=abc", "must start with 'n,,'"),
    (b"n,,r=abc", "n=<user>,r=<nonce>"),
    (b"n,,n=user,r=abc,tokenauth=true", "token"),
    (b"n,,n=us=er,r=abc", "user name"),
    (b"n,,n=user,r", "attribute"),
])
def test_bad_client_first_is_refused(client_first, reason):
    exchange = ScramExchange(SCRAM_SHA_256, {}, b"secret")
    with pytest.raises(ScramError, match=reason):
        exchange.first(client_first)


def _client_final(mechanism: str, password: str, client_first: bytes, server_first: bytes) -> bytes:
    """What a SCRAM client sends (RFC 5802 section 3), for the round trips below."""
    digest = scram.HASHES[mechanism]
    fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.digest(salted, b"Client Key", digest)
    without_proof = f"c=biws,r={fields['r']}"
    auth = b",".join([client_first[3:], server_first, without_proof.encode()])
    signature = hmac.digest(hashlib.new(digest, client_key).digest(), auth, digest)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize("mechanism", [SCRAM_SHA_256, SCRAM_SHA_512])
def test_session_right_password_authenticates_wrong_and_unknown_do_not(mechanism):
    security = KafkaSecurity(None, {"viz": "s3cret", "a,b=c": "pw"})
    for user, claimed, password, ok in [("viz", "viz", "s3cret", True), ("viz", "viz", "wrong", False),
                                        ("ghost", "ghost", "s3cret", False), ("a,b=c", "a=2Cb=3Dc", "pw", True)]:
        session = SaslSession(security, mechanism)
        first = f"n,,n={claimed},r=clientnonce".encode()
        server_first, done = session.authenticate(first)
        assert done is None and server_first.startswith(b"r=clientnonce")
        final = _client_final(mechanism, password, first, server_first)
        if ok:
            answer, done = session.authenticate(final)
            assert done == user and answer.startswith(b"v=")
        else:
            with pytest.raises(SaslFailed, match=f"invalid credentials with SASL mechanism {mechanism}") as failed:
                session.authenticate(final)
            assert failed.value.user == user and "s3cret" not in failed.value.reason


def test_unknown_user_gets_a_stable_salt_like_a_known_one():
    security = KafkaSecurity(None, {"viz": "s3cret"})
    salts = [dict(p.split("=", 1) for p in SaslSession(security, SCRAM_SHA_256).authenticate(
        f"n,,n={user},r=n".encode())[0].decode().split(","))["s"] for user in ("ghost", "ghost", "viz")]
    assert salts[0] == salts[1] and len(base64.b64decode(salts[0])) == len(base64.b64decode(salts[2]))


def test_credentials_are_derived_at_load_not_kept_as_salted_passwords():
    credential = make_credential(SCRAM_SHA_512, "pw")
    assert credential.iterations == 4096 and len(credential.salt) == 16
    assert len(credential.stored_key) == len(credential.server_key) == 64
    assert make_credential(SCRAM_SHA_512, "pw").salt != credential.salt  # a fresh salt each load
