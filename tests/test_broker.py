"""The embedded broker: a real Tansu process on loopback, driven with plain confluent-kafka."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.errors import BrokerError
from streams.kafka.admin import create_topics, end_offsets_read
from streams.kafka.broker import EmbeddedBroker, free_port, port_open
from streams.kafka.reader import read
from streams.kafka.topics import all_topics
from tests.replays import iu

pytestmark = pytest.mark.integration  # starts brokers, workers or `iu` processes


def test_topics_are_created_with_their_partition_counts(broker):
    topics = all_topics(("home", "search"), 3)
    create_topics(broker, topics)
    found = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=5).topics
    assert {t: len(found[t].partitions) for t in topics} == topics
    create_topics(broker, topics)  # idempotent
    with pytest.raises(BrokerError, match="other partition counts"):
        create_topics(broker, {"iu.events.home": 5})


def test_keyed_messages_round_trip(broker):
    create_topics(broker, {"t.roundtrip": 3})
    producer = Producer({"bootstrap.servers": broker})
    for i in range(30):
        producer.produce("t.roundtrip", key=f"u{i % 5}".encode(), value=str(i).encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "rt", "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    consumer.subscribe(["t.roundtrip"])
    got: dict[bytes, set[int]] = {}
    values: set[int] = set()
    deadline = time.monotonic() + 30
    while len(values) < 30 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.setdefault(m.key(), set()).add(m.partition())
            values.add(int(m.value()))
    consumer.close()
    assert values == set(range(30))
    assert len(got) == 5 and all(len(parts) == 1 for parts in got.values()), "one key, one partition"


def test_a_reader_sees_every_partition_at_once_without_a_group_join(broker):
    """The demo's and `iu recs tail`'s reader: no group join (one takes ~20 s on Tansu), so a list
    emitted in the demo's first seconds is on screen in its first seconds."""
    create_topics(broker, {"t.reader": 3})
    producer = Producer({"bootstrap.servers": broker})
    for i in range(30):
        producer.produce("t.reader", key=str(i), value=str(i), partition=i % 3)
    producer.flush(10)
    t0 = time.monotonic()
    got = []
    for value in read(broker, "t.reader", idle_timeout=15):
        got.append(int(value))
        if len(got) == 30:
            break
    assert sorted(got) == list(range(30)) and time.monotonic() - t0 < 5, (len(got), time.monotonic() - t0)


def test_end_offsets_are_read_past_tansus_short_answer_for_multi_record_batches(broker):
    """Tansu's ListOffsets(latest) stops at the last batch's base offset + 1; table recovery must not."""
    create_topics(broker, {"t.ends": 2})
    p = Producer({"bootstrap.servers": broker, "linger.ms": 50, "enable.idempotence": False})
    for batch in (100, 7):  # two multi-record batches on partition 0; partition 1 stays empty
        for i in range(batch):
            p.produce("t.ends", value=b"%d" % i, partition=0)
        assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": broker, "group.id": "t-ends"})
    reported = {("t.ends", n): c.get_watermark_offsets(TopicPartition("t.ends", n), timeout=10)[1] for n in (0, 1)}
    c.close()
    assert reported[("t.ends", 0)] < 107  # the quirk itself: if Tansu mends it, this workaround can go
    assert end_offsets_read(broker, reported) == {("t.ends", 0): 107, ("t.ends", 1): 0}


def test_port_in_use_is_a_clear_error(broker):
    port = int(broker.rsplit(":", 1)[1])
    with pytest.raises(BrokerError, match="already in use"):
        EmbeddedBroker(port=port).start()


def test_iu_broker_start_status_stop_and_no_stop_under_a_client(tmp_path):
    env = {"IU_SCENARIOS": "home", "IU_BROKER_DIR": str(tmp_path), "IU_BROKER_PORT": str(free_port())}

    def broker(*args: str) -> subprocess.CompletedProcess:
        return iu("broker", *args, env=env, timeout=60)

    started = broker("start", "--partitions", "2")
    try:
        assert started.returncode == 0, started.stderr
        lines = started.stdout.strip().splitlines()
        assert "started" in lines[0] and "memory only" in lines[0], lines
        assert lines[1] == f"IU_KAFKA_BOOTSTRAP=127.0.0.1:{env['IU_BROKER_PORT']} IU_BROKER_PROFILE=tansu", lines
        bootstrap = lines[1].split()[0].split("=", 1)[1]
        assert "running" in broker("start", "--partitions", "2").stdout  # found, not started twice
        assert len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).topics["iu.events.home"]
                   .partitions) == 2
        status = broker("status")
        assert status.returncode == 0 and f"running at {bootstrap}" in status.stdout, status
        client = Consumer({"bootstrap.servers": bootstrap, "group.id": "holder"})
        client.list_topics(timeout=5)
        refused = broker("stop")
        client.close()
        assert refused.returncode == 1 and "client connection" in refused.stderr, refused
        assert port_open("127.0.0.1", int(env["IU_BROKER_PORT"]))
        deadline = time.monotonic() + 10
        while (stopped := broker("stop")).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # the closed client's connection takes a moment to go
        assert stopped.returncode == 0, stopped.stderr
        assert not port_open("127.0.0.1", int(env["IU_BROKER_PORT"]))
        assert broker("status").returncode == 3
    finally:
        broker("stop", "--force")
