"""tcp with ZeroMQ CURVE: keys from ``edge keys``, a broker that lets only authorized
client keys through, a clear BrokerAuthError for a refused key, and refusals at start-up
for an open tcp bind without CURVE and for a missing key file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.client import Admin, Consumer, Producer
from broker.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV
from broker.errors import BrokerAuthError, BrokerUnavailableError
from tests.support.broker_process import BrokerProcess, free_tcp_port

EDGE = [sys.executable, "-m", "edge.cli"]


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def keys(tmp_path):
    """broker pair, an authorized client and a stranger (whose .key is not authorized)."""
    for directory, name in (("server", "broker"), ("clients", "laptop"), ("strangers", "stranger")):
        made = edge("keys", str(tmp_path / "curve" / directory), name)
        assert made.returncode == 0, made.stderr
    again = edge("keys", str(tmp_path / "curve" / "clients"), "laptop")
    assert again.returncode == 2 and "already exists" in again.stderr
    return tmp_path / "curve"


def write_config(tmp_path, data_dir, endpoint, curve_dir=None, extra=""):
    text = f'[broker]\ndata_dir = "{data_dir}"\nendpoint = "{endpoint}"\n{extra}'
    if curve_dir is not None:
        text += (f'[broker.curve]\nserver_secret_key = "{curve_dir}/server/broker.key_secret"\n'
                 f'authorized_keys = "{curve_dir}/clients"\n')
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_only_authorized_keys_get_through(tmp_path, data_dir, keys, monkeypatch):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    config = write_config(tmp_path, data_dir, endpoint, keys)
    monkeypatch.setenv(CLIENT_KEY_ENV, str(keys / "clients" / "laptop.key_secret"))
    monkeypatch.setenv(SERVER_KEY_ENV, str(keys / "server" / "broker.key"))
    with BrokerProcess(data_dir, endpoint=endpoint, extra_args=["--config", str(config)]) as broker:
        assert "curve=\"1 authorized clients\"" in broker.log()
        with Producer(endpoint, acks="durable") as producer:
            producer.send("t", b"over curve").result(10)
        consumer = Consumer(endpoint)
        consumer.assign([("t", 0)])
        records = consumer.poll(5.0)
        consumer.close()
        assert [bytes(r.value) for r in records] == [b"over curve"]

        monkeypatch.setenv(CLIENT_KEY_ENV, str(keys / "strangers" / "stranger.key_secret"))
        with pytest.raises(BrokerAuthError) as refused:
            with Admin(endpoint, timeout_s=2) as admin:
                admin.ping()
        assert "refused the CURVE handshake" in refused.value.message

        monkeypatch.delenv(CLIENT_KEY_ENV)
        monkeypatch.delenv(SERVER_KEY_ENV)
        with pytest.raises(BrokerUnavailableError):
            with Admin(endpoint, timeout_s=2) as admin:
                admin.ping()  # a plain client gets nothing from a CURVE broker

        monkeypatch.setenv(CLIENT_KEY_ENV, str(keys / "clients" / "laptop.key_secret"))
        with pytest.raises(Exception, match=SERVER_KEY_ENV):
            Admin(endpoint, timeout_s=2)  # half a key set is a configuration error


def test_open_tcp_without_curve_and_missing_keys_are_refused(tmp_path, data_dir, keys):
    open_bind = f"tcp://0.0.0.0:{free_tcp_port()}"
    refused = edge("broker", "--data-dir", str(data_dir), "--endpoint", open_bind)
    assert refused.returncode == 2
    assert "reachable from other hosts" in refused.stderr and "[broker.curve]" in refused.stderr

    config = write_config(tmp_path, data_dir, open_bind, extra="allow_insecure_tcp = true\n")
    allowed = subprocess.Popen([*EDGE, "broker", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        with Admin(open_bind.replace("0.0.0.0", "127.0.0.1"), timeout_s=10) as admin:
            assert admin.ping()
    finally:
        allowed.terminate()
        allowed.communicate(timeout=30)

    (keys / "server" / "broker.key_secret").unlink()
    config = write_config(tmp_path, data_dir, open_bind, keys)
    missing = edge("broker", "--config", str(config))
    assert missing.returncode == 2 and "broker.key_secret does not exist" in missing.stderr
