"""The mirror: ships chosen local topics to a cloud Apache Kafka cluster, exactly once."""
