"""Session-scoped fixtures: import them into a conftest with
``from tests.kafka.fixtures import kafka_cluster, kafka_single``."""

from __future__ import annotations

import pytest

from .harness import KafkaCluster, KafkaHarnessError, self_signed_cert


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory):
    """Three KRaft nodes on loopback (RF 3, min.insync.replicas 2)."""
    try:
        cluster = KafkaCluster(nodes=3, base_dir=tmp_path_factory.mktemp("kafka3")).start()
    except KafkaHarnessError as exc:
        pytest.fail(f"could not start the Kafka test cluster: {exc}")
    yield cluster
    cluster.discard()  # temporary storage: no orderly shutdown needed


@pytest.fixture(scope="session")
def kafka_single(tmp_path_factory):
    """One KRaft node; besides PLAINTEXT, a SASL_SSL listener (SCRAM-SHA-256/512, user viz,
    password s3cret-pass; ``sasl_bootstrap_servers``, CA ``tls_cert``) for differential tests."""
    base = tmp_path_factory.mktemp("kafka1")
    try:
        cert, key = self_signed_cert(base)
        cluster = KafkaCluster(nodes=1, base_dir=base, scram_users={"viz": "s3cret-pass"}, tls_cert=cert,
                               tls_key=key).start()
    except KafkaHarnessError as exc:
        pytest.fail(f"could not start the Kafka test cluster: {exc}")
    yield cluster
    cluster.discard()  # temporary storage: no orderly shutdown needed
