"""tcp with ZeroMQ CURVE: keys from ``edge keys``, a broker that lets only authorized
client keys through, a clear BrokerAuthError for a refused key, refusals at start-up
for an open tcp bind without CURVE and for a missing key file, and ``edge up`` end to end
on tcp with CURVE (drivers and API reach the broker with the keys it exports)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from broker.client import Admin, Consumer, Producer
from broker.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV
from broker.errors import BrokerAuthError, BrokerUnavailableError
from tests.integration.test_edge_up import SENSOR_TOPICS, sim_config, topic_ends, wait_for
from tests.support.broker_process import BrokerProcess, free_tcp_port

EDGE = [sys.executable, "-m", "edge.cli"]


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=60, check=False)


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
        with pytest.raises(BrokerAuthError) as refused, Admin(endpoint, timeout_s=2) as admin:
            admin.ping()
        assert "refused the CURVE handshake" in refused.value.message

        monkeypatch.delenv(CLIENT_KEY_ENV)
        monkeypatch.delenv(SERVER_KEY_ENV)
        with pytest.raises(BrokerUnavailableError), Admin(endpoint, timeout_s=0.5) as admin:  # only the failure counts
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
            assert wait_for(admin.ping, 20, "the broker on an allowed open tcp bind")  # it may take >1 s to bind
    finally:
        allowed.terminate()
        allowed.communicate(timeout=30)

    (keys / "server" / "broker.key_secret").unlink()
    config = write_config(tmp_path, data_dir, open_bind, keys)
    missing = edge("broker", "--config", str(config))
    assert missing.returncode == 2 and "broker.key_secret does not exist" in missing.stderr


@pytest.mark.slow
def test_edge_up_over_tcp_with_curve(tmp_path, monkeypatch):
    """``edge up`` with a tcp endpoint and [broker.curve]: the broker, drivers and API find
    each other with the keys ``edge up`` exports (the child environment carries none), and a
    client without the appliance's key is refused."""
    curve = tmp_path / "curve"
    for directory, name in ((curve, "broker"), (curve, "appliance"), (curve / "strangers", "stranger")):
        made = edge("keys", str(directory), name)
        assert made.returncode == 0, made.stderr
    (curve / "clients").mkdir()
    shutil.copy(curve / "appliance.key", curve / "clients" / "appliance.key")  # authorize the appliance
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    config = sim_config(tmp_path)
    text = config.read_text()
    assert text.count("[broker]\n") == 1, "configs/sim.toml no longer has one [broker] table"
    config.write_text(text.replace("[broker]\n", f'[broker]\nendpoint = "{endpoint}"\n') +
                      '\n[broker.curve]\n'  # relative to the config file, as an operator may write them
                      'server_secret_key = "curve/broker.key_secret"\n'
                      'authorized_keys = "curve/clients"\n'
                      'client_secret_key = "curve/appliance.key_secret"\n'
                      'server_public_key = "curve/broker.key"\n')
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in (CLIENT_KEY_ENV, SERVER_KEY_ENV, "EDGE_ENDPOINT")}
    out_path = tmp_path / "edge-up.log"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([*EDGE, "up", "--config", str(config), "--data-dir", str(data_dir),
                                 "--status-interval", "1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    logs = data_dir / "logs"
    try:
        monkeypatch.setenv(CLIENT_KEY_ENV, str(curve / "appliance.key_secret"))
        monkeypatch.setenv(SERVER_KEY_ENV, str(curve / "broker.key"))
        try:
            first = wait_for(lambda: proc.poll() is None and (e := topic_ends(endpoint)) and set(e) >= SENSOR_TOPICS
                             and e, 30, f"the sensor topics on {endpoint}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nedge up said:\n{out_path.read_text(errors='replace')[-3000:]}") from None
        wait_for(lambda: all(topic_ends(endpoint)[t] > first[t] for t in SENSOR_TOPICS), 20,
                 "every sensor topic to grow")

        broker_log = (logs / "broker.log").read_text(errors="replace")
        listening = [line for line in broker_log.splitlines() if "broker_listening" in line]
        assert len(listening) == 1, broker_log[-3000:]
        assert f"endpoint={endpoint}" in listening[0] and 'curve="1 authorized clients"' in listening[0], listening

        # the API reached the broker too: /readyz answers 200 only when it did
        api = wait_for(lambda: (logs / "api.log").exists() and re.search(
            r"api_ready\b.*?listen=\"?(127\.0\.0\.1:\d+)", (logs / "api.log").read_text(errors="replace")), 20,
            "the API to report its address in its log")
        wait_for(lambda: requests.get(f"http://{api.group(1)}/readyz", timeout=2).status_code == 200, 15,
                 "the API's /readyz (its broker client over CURVE)")

        monkeypatch.setenv(CLIENT_KEY_ENV, str(curve / "strangers" / "stranger.key_secret"))
        with pytest.raises(BrokerAuthError) as refused, Admin(endpoint, timeout_s=2) as admin:
            admin.ping()
        assert "refused the CURVE handshake" in refused.value.message
        with pytest.raises(BrokerAuthError):
            consumer = Consumer(endpoint)
            try:
                consumer.assign([("camera.front", 0)])
                consumer.poll(2.0)
            finally:
                consumer.close()

        monkeypatch.delenv(CLIENT_KEY_ENV)
        monkeypatch.delenv(SERVER_KEY_ENV)
        with pytest.raises(BrokerUnavailableError) as nothing, Admin(endpoint, timeout_s=0.5) as admin:
            admin.ping()  # a plain client gets nothing from a CURVE broker
        assert type(nothing.value) is BrokerUnavailableError
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    out = out_path.read_text(errors="replace")
    assert proc.returncode == 0 and "stopped cleanly" in out, out[-3000:]
    children = "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
    assert "refused the CURVE handshake" not in children and "broker_unavailable" not in children, children[-3000:]
