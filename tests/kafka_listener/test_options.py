"""Listener options: loopback by default, a non-loopback bind refused without
--kafka-insecure, config keys validated, busy default port not fatal."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from broker.client import Admin
from edge.config import ConfigError, load_config
from tests.support.broker_process import EDGE, BrokerProcess, free_tcp_port

REPO = Path(__file__).resolve().parents[2]


def run_broker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGE, "broker", "--data-dir", str(tmp_path / "data"), *args], capture_output=True,
                          text=True, timeout=30, check=False)


def test_non_loopback_kafka_listener_is_refused_without_insecure(tmp_path):
    out = run_broker(tmp_path, "--kafka-listen", f"0.0.0.0:{free_tcp_port()}")
    assert out.returncode == 2
    assert "event=broker_refused" in out.stderr and "--kafka-insecure" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_kafka_address_and_taken_named_port_stop_the_broker(tmp_path):
    out = run_broker(tmp_path, "--kafka-listen", "localhost")
    assert out.returncode == 2 and "expected HOST:PORT" in out.stderr and "Traceback" not in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = run_broker(tmp_path, "--kafka-listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert out.returncode == 2 and "event=kafka_bind_failed" in out.stderr


def test_config_keys(tmp_path):
    sim = (REPO / "configs" / "sim.toml").read_text()
    assert load_config(REPO / "configs" / "sim.toml").broker.kafka_listen == "127.0.0.1:9092"
    bad = tmp_path / "bad.toml"
    bad.write_text(sim.replace('kafka_listen = "127.0.0.1:9092"', 'kafka_listen = "nine-oh-nine-two"'))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "kafka_listen" in err.value.message and str(bad) in err.value.message



def test_busy_default_port_is_logged_and_the_broker_serves_on(tmp_path):
    """A config that does not name kafka_listen gets 127.0.0.1:9092; if that is taken (here
    by the test, or by anything else), the broker still starts and says so."""
    config = tmp_path / "edge.toml"
    config.write_text('[broker]\ndata_dir = "data"\n')
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 9092))
        holder.listen()
    except OSError:
        pass  # taken already: same situation
    try:
        proc = BrokerProcess(tmp_path / "data", extra_args=["--config", str(config)]).start()
        try:
            with Admin(proc.endpoint) as admin:
                assert admin.ping()
            assert "event=kafka_bind_failed" in proc.log() and "serving without the Kafka listener" in proc.log()
        finally:
            assert proc.stop() == 0
    finally:
        holder.close()
