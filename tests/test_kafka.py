"""What only Apache Kafka does, against the 3-node cluster: replication, and offsets that hold no record.

A transactional producer leaves a marker (a control record, never delivered) after each
transaction; retention or DeleteRecords removes records a stopped worker has not read. Either way
the next record comes past the offset the worker expected, and no refetch can bring the missing
offsets: the worker must pass over them, count them, and go on.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.kafka.admin import prepare_topics, present_offsets
from streams.kafka.continuity import IDLE_S, STALL_S
from streams.kafka.replay import event_json
from streams.kafka.topics import all_topics, changelog_topic, events_topic, internal_topics
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess
from streams.worker.gauges import GAUGE_INTERVAL_S
from tests.replays import ml100k, replay, wait_applied

TRANSACTION = 50


def publish_in_transactions(bootstrap: str, events: list, tid: str) -> int:
    """`events` in transactions of TRANSACTION events; how many transactions."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "partitioner": "murmur2_random",
                  "linger.ms": 5})
    p.init_transactions(30)
    n = 0
    for k in range(0, len(events), TRANSACTION):
        p.begin_transaction()
        for e in events[k:k + TRANSACTION]:
            p.produce(events_topic(e.scenario), key=e.user_id.encode(), value=event_json(e))
        p.commit_transaction(30)
        n += 1
    return n


def test_transaction_markers_and_deleted_records_are_passed_over_not_fetched_forever(tiny_model, kafka_stack,
                                                                                     tmp_path):
    events = ml100k(2000)
    first, second = events[:1000], events[1000:]
    env = replay(kafka_stack, tiny_model, tmp_path, "tx", [])
    bootstrap = kafka_stack.bootstrap
    with WorkerProcess(env, tmp_path / "tx.log") as worker:
        transactions = publish_in_transactions(bootstrap, first, "iu-test-upstream")
        wait_applied(worker, first, 120, bootstrap)
        # A partition's last marker is passed over when it stalls there: once the agent is idle, at the
        # gauge timer's next tick after STALL_S.
        time.sleep(STALL_S + IDLE_S + 2 * GAUGE_INTERVAL_S)
        stats = worker.get("/stats")
        refetched = worker.metric("iu_consumer_refetches_total")
        skipped = worker.metric("iu_offsets_skipped_total")
    # Every transaction left one marker in each partition it wrote to: passed over, not fetched again.
    assert refetched == 0, stats
    assert transactions <= skipped, (transactions, skipped, stats)
    # A worker stopped gracefully has committed every partition as far as it got, markers included.
    settings = Settings.from_env(env)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": settings.app_id})
    tps = [TopicPartition(topic, int(p)) for topic, p in (key.rsplit(":", 1) for key in stats["next_offsets"])]
    committed = {f"{tp.topic}:{tp.partition}": tp.offset for tp in c.committed(tps, timeout=10)}
    c.close()
    assert committed == stats["next_offsets"]

    # While no worker runs: more events, then the oldest unread records of one partition deleted.
    plain = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})
    for e in second:
        plain.produce(events_topic(e.scenario), key=e.user_id.encode(), value=event_json(e))
    assert plain.flush(30) == 0
    tp = TopicPartition(events_topic("home"), 0)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": settings.app_id})
    [committed] = c.committed([tp], timeout=10)
    end = c.get_watermark_offsets(tp, timeout=10)[1]
    c.close()
    cut = (committed.offset + end) // 2
    [(_, (_, present))] = present_offsets(bootstrap, {(tp.topic, tp.partition): (committed.offset, cut)}).items()
    assert len(present) > 0, (committed.offset, cut, end)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [fut] = admin.delete_records([TopicPartition(tp.topic, tp.partition, cut)], request_timeout=30).values()
    fut.result(30)
    prepare_topics(settings, bootstrap)  # unchanged: the worker finds its topics as it left them

    with WorkerProcess(env, tmp_path / "tx2.log") as again:
        deadline = time.monotonic() + 120
        while (applied := again.get("/state/digest")["events_applied"]) < len(events) - len(present):
            assert time.monotonic() < deadline, (applied, len(events) - len(present), again.get("/stats"))
            time.sleep(0.5)
        time.sleep(3)  # nothing more, nothing twice
        assert again.get("/state/digest")["events_applied"] == len(events) - len(present)
        # The deleted range is passed over and counted at once, or, where Faust dispatched records before
        # the seek that anchors the agent's expectations (applied, but moving none), once the partition
        # stalls at the deleted range (STALL_S, then the next gauge tick).
        deadline = time.monotonic() + STALL_S + IDLE_S + 4 * GAUGE_INTERVAL_S
        while (skipped_again := again.metric("iu_offsets_skipped_total")) < cut - committed.offset:
            assert time.monotonic() < deadline, (skipped_again, cut - committed.offset, again.get("/stats"))
            time.sleep(0.5)
        assert again.get("/state/digest")["events_applied"] == len(events) - len(present)  # none twice
        # A restart may fetch a partition again once (records Faust drops around its seek, see
        # streams/kafka/continuity.py); the deleted range is never among them, or it would be fetched for good.
        refetches = again.metric("iu_consumer_refetches_total")
        assert refetches <= Settings.from_env(env).partitions * len(settings.scenarios), again.tail()
    print(f"{transactions} transactions, {skipped:.0f} offsets passed over; {len(present)} records deleted unread")


def test_every_topic_is_replicated_three_times_faust_s_own_included(kafka_stack, tmp_path):
    """IU_REPLICATION_FACTOR's default on a 3-broker cluster: 3 copies of every topic the worker
    uses, Faust's changelog (compacted) and leader topics included; 2 must be in sync for a write."""
    settings = Settings.from_env(kafka_stack.env)
    assert prepare_topics(settings, kafka_stack.bootstrap) == 3
    admin = AdminClient({"bootstrap.servers": kafka_stack.bootstrap})
    topics = {name: t for name, t in admin.list_topics(timeout=10).topics.items() if not name.startswith("__")}
    assert set(topics) == {*all_topics(settings.scenarios, settings.partitions), *internal_topics(settings)}
    assert {name: {len(p.replicas) for p in t.partitions.values()} for name, t in topics.items()} == \
        {name: {3} for name in topics}
    [changelog] = admin.describe_configs([ConfigResource("topic", changelog_topic(settings))]).values()
    config = changelog.result(10)
    assert config["cleanup.policy"].value == "compact" and config["min.insync.replicas"].value == "2"
