"""Apache Kafka for tests and local use: the broker's jars from Maven Central, and a KRaft cluster on loopback."""
