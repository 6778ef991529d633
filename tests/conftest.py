"""Shared fixtures: small, seeded data sets and models so tests run in seconds to minutes on 2 cores,
and the two stacks every integration test runs on:

- `embedded`: a Tansu broker of the test's own and a milvus-lite file (the zero-setup default);
- `production`: one 3-node Apache Kafka cluster (replication factor 3, min.insync.replicas 2) and one
  Milvus standalone server for the whole session, wiped between tests (topics, consumer groups,
  collections), so each test starts from offset 0 as on a fresh broker.

A test takes the `stack` fixture to run once on each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from models.data.dataset import SequenceData, build
from models.data.synth import SynthSpec, generate
from ops.kafka.cluster import KafkaCluster
from streams.kafka.broker import EmbeddedBroker, LocalBroker, free_port
from streams.testing.supervise import MilvusServer, WorkerProcess
from tests.replays import N_REFERENCE, ml100k, replay, wait_applied
from tests.stacks import Stack, drop_collections, wipe

STACKS = ("embedded", "production")
# A test that takes one of these runs brokers, Milvus, worker processes or a trained model: `integration`.
# Every other test is `unit` (pure logic, in-process, seconds in all): `make test-unit`.
INTEGRATION_FIXTURES = {"tiny_model", "stack", "broker", "kafka_cluster", "milvus_server", "shared_milvus",
                        "kafka_stack", "production", "reference", "consume_all", "milvus_uri", "synth_model"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marked = {m.name for m in item.iter_markers()}
        if "integration" not in marked and "unit" not in marked:
            heavy = INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.integration if heavy else pytest.mark.unit)
SESSION_TIMEOUT_S = 6  # the least Kafka takes by default: a killed worker's partitions move on after it


@pytest.fixture(scope="session", autouse=True)
def local_broker_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """`iu` commands under test that start the local embedded broker start it here, on a free port,
    never in the checkout's var/ or on its default port; stopped at the end of the session."""
    home = LocalBroker(tmp_path_factory.mktemp("broker-home"), free_port())
    os.environ.update({"IU_BROKER_DIR": str(home.folder), "IU_BROKER_PORT": str(home.port)})
    yield home
    home.stop(force=True)


@pytest.fixture(scope="session")
def small_synth() -> SequenceData:
    events, items = generate(SynthSpec(users=150, items=120, events_per_user=30, seed=3))
    return build(events, items, ("home", "search", "video"))


def _consume_all(bootstrap: str, topic: str, until: object, timeout: float = 60.0) -> list:
    """Plain confluent-kafka, every partition from the beginning, until `until(messages)` holds or the
    timeout. Partitions are assigned, not subscribed to: a group join costs ~20 s on Tansu."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{topic}-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out, deadline = [], time.monotonic() + timeout
    try:
        while not (found := c.list_topics(topic, timeout=10).topics.get(topic)) or found.error or not found.partitions:
            if time.monotonic() > deadline:
                return out
            time.sleep(0.2)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in found.partitions])
        while time.monotonic() < deadline and not until(out):  # type: ignore[operator]
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        c.close()
    return out


@pytest.fixture(scope="session")
def consume_all() -> Callable[..., list]:
    """Reads a topic with plain confluent-kafka: `consume_all(bootstrap, topic, until, timeout)`."""
    return _consume_all


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A real Tansu broker on a free loopback port for the whole session; yields its bootstrap."""
    with EmbeddedBroker() as b:
        yield b.bootstrap


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on ml-100k for one epoch: enough for the pipeline tests, which check
    mechanics (state, topics, metrics), not accuracy. Its model_version starts with "tiny-"."""
    ml100k = Path("var/data/ml-100k")
    if not (ml100k / "events.csv").exists():
        pytest.fail("ml-100k is not prepared: run `iu data fetch ml-100k` (make test does it first)")
    out = tmp_path_factory.mktemp("model") / "tiny"
    r = subprocess.run([sys.executable, "-m", "streams.cli", "train", "--dataset", str(ml100k), "--out", str(out),
                        "--epochs", "1", "--dim", "32", "--layers", "1", "--max-len", "20", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The state digest of an uninterrupted run over the first N_REFERENCE ml-100k events, on a Tansu
    broker. Kafka puts the same records at the same offsets (same keys, same murmur2 partitions, same
    order, no duplicates), so one reference serves both stacks and every fault."""
    tmp = tmp_path_factory.mktemp("reference")
    events = ml100k(N_REFERENCE)
    with EmbeddedBroker() as b:
        stack = Stack("embedded", b.bootstrap, str(tmp / "milvus.db"),
                      {"IU_KAFKA_BOOTSTRAP": b.bootstrap, "IU_BROKER_PROFILE": "tansu"})
        with WorkerProcess(replay(stack, tiny_model, tmp, "ref", events), tmp / "ref.log") as w:
            return wait_applied(w, events, 300)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three KRaft nodes of Apache Kafka on loopback for the whole session (started on first use)."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:  # killed, not stopped: the data is thrown away, and a controlled shutdown of all three takes ~30 s
        for node_id in cluster.nodes:
            cluster.kill(node_id)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """A Milvus standalone server for the whole session (started on first use). One at a time: a
    second would meet the first on its embedded etcd's fixed peer port."""
    server = MilvusServer(tmp_path_factory.mktemp("milvus-server")).start()
    try:
        yield server
    finally:  # killed, not stopped: the data is thrown away, and its graceful stop can take a minute
        server.kill()


@pytest.fixture
def shared_milvus(milvus_server: MilvusServer) -> Iterator[MilvusServer]:
    """The session's Milvus server with no collections, for tests that need a server on either stack
    (workers sharing one, an outage); running again afterwards even if the test stopped it."""
    drop_collections(milvus_server.uri)
    yield milvus_server
    if milvus_server.proc is None or milvus_server.proc.poll() is not None:
        milvus_server.start()


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The test runs once per stack, on a fresh broker and vector store."""
    if request.param == "embedded":
        with EmbeddedBroker() as b:
            uri = str(tmp_path / "milvus.db")
            yield Stack("embedded", b.bootstrap, uri, {"IU_KAFKA_BOOTSTRAP": b.bootstrap, "IU_BROKER_PROFILE": "tansu",
                                                       "IU_MILVUS_URI": uri})
        return
    yield production(request)


@pytest.fixture
def kafka_stack(request: pytest.FixtureRequest) -> Stack:
    """The production stack alone, for what only Apache Kafka does (transactions, deleted records)."""
    return production(request)


def production(request: pytest.FixtureRequest) -> Stack:
    """The session's Kafka cluster and Milvus server (started on first use), wiped."""
    cluster: KafkaCluster = request.getfixturevalue("kafka_cluster")
    milvus: MilvusServer = request.getfixturevalue("milvus_server")
    wipe(cluster, milvus.uri)
    return Stack("production", cluster.bootstrap, milvus.uri,
                 {"IU_KAFKA_BOOTSTRAP": cluster.bootstrap, "IU_BROKER_PROFILE": "kafka", "IU_MILVUS_URI": milvus.uri,
                  "IU_RETRIEVAL": "milvus", "IU_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)})
