from tests.kafka.fixtures import kafka_cluster, kafka_single  # noqa: F401 - fixtures
