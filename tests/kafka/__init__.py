"""A real Apache Kafka cluster for the tests (fetched from Maven Central, cached)."""
