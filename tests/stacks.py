"""The two stacks the integration tests run on (see tests/conftest.py's `stack` fixture)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from pymilvus import MilvusClient

from ops.kafka.cluster import KafkaCluster
from streams.kafka.replay import producer


@dataclass
class Stack:
    """Where a test's worker runs: `env` holds the IU_* settings that name the broker and Milvus."""

    name: str
    bootstrap: str
    milvus_uri: str
    env: dict[str, str]

    @property
    def production(self) -> bool:
        return self.name == "production"

    def producer(self) -> Producer:
        """The product's producer settings for this stack's broker (idempotent on Apache Kafka)."""
        return producer(self.bootstrap, idempotent=self.production)


def wipe(cluster: KafkaCluster, milvus_uri: str, timeout: float = 60.0) -> None:
    """Every topic but Kafka's own, every consumer group and every Milvus collection, gone; waits until
    no node's metadata lists a deleted topic (a topic created again too early would meet the old one)."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 0})
    topics = [t for t in admin.list_topics(timeout=10).topics if not t.startswith("__")]
    for fut in (admin.delete_topics(topics, operation_timeout=30) if topics else {}).values():
        fut.result(30)
    groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid]
    for fut in (admin.delete_consumer_groups(groups, request_timeout=10) if groups else {}).values():
        with contextlib.suppress(Exception):  # a group whose members a test killed expires by itself
            fut.result(10)
    deadline = time.monotonic() + timeout
    for node in cluster.nodes.values():
        one = AdminClient({"bootstrap.servers": node.address, "log_level": 0})
        while set(topics) & set(one.list_topics(timeout=10).topics):
            assert time.monotonic() < deadline, f"topics not deleted within {timeout:.0f} s"
            time.sleep(0.2)
    drop_collections(milvus_uri)


def drop_collections(milvus_uri: str) -> None:
    """Every collection and alias (a Milvus server keeps an alias whose collection is dropped)."""
    client = MilvusClient(milvus_uri)
    for name in client.list_collections():
        for alias in client.list_aliases(collection_name=name)["aliases"]:
            client.drop_alias(alias)
        client.drop_collection(name)
