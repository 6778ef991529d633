"""Kafka administration the worker and the tests share, on any cluster: topics created with their
partition counts and replication, and what a partition holds, read with plain confluent-kafka."""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import BrokerError
from streams.kafka.replay import QUIET
from streams.kafka.topics import COMPACTED, all_topics, changelog_topic, internal_topics
from streams.settings import Settings

# confluent-kafka's documented name for the end-of-partition event has a leading underscore
PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001


def create_topics(bootstrap: str, topics: Mapping[str, int], replication: int = 0,
                  configs: Mapping[str, Mapping[str, str]] | None = None, timeout: float = 10.0) -> int:
    """Create missing topics with their partition counts (an existing topic with another count is an
    error), each replicated `replication` times: 0 means 3, or the cluster's broker count when smaller.
    `configs` gives topics their topic-level configuration. Returns the replication factor used."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})  # the error below says it in one line
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as e:
        raise BrokerError(f"Kafka at {bootstrap} is unreachable ({e}): check IU_KAFKA_BOOTSTRAP, "
                          "or unset it to run the embedded broker") from None
    rf = replication or min(3, len(metadata.brokers))
    existing = metadata.topics
    wrong = {t: len(existing[t].partitions) for t, n in topics.items() if t in existing
             and len(existing[t].partitions) != n}
    if wrong:
        raise BrokerError(f"topics exist with other partition counts: {wrong} (wanted {dict(topics)})")
    missing = [NewTopic(t, num_partitions=n, replication_factor=rf, config=dict((configs or {}).get(t, {})))
               for t, n in topics.items() if t not in existing]
    errors = {}
    futures = admin.create_topics(missing, operation_timeout=timeout) if missing else {}
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as e:  # e.g. created meanwhile by another process: checked below
            errors[topic] = e
    deadline = time.monotonic() + timeout
    while absent := [t.topic for t in missing if t.topic not in admin.list_topics(timeout=timeout).topics]:
        if time.monotonic() > deadline:  # a new topic takes a moment to reach every broker's metadata
            raise BrokerError(f"could not create topics {absent} on {bootstrap}: "
                              f"{ {t: str(errors.get(t, 'not in the metadata')) for t in absent} }")
        time.sleep(0.1)
    return rf


def end_offsets_read(bootstrap: str, reported: Mapping[tuple[str, int], int], timeout: float = 10.0
                     ) -> dict[tuple[str, int], int]:
    """Each partition's end offset as a fetch reports it, given what ListOffsets(latest) said.

    Why: Tansu answers ListOffsets(latest) with the base offset of a partition's last record batch
    plus one, short of the end whenever that batch holds more than one record (measured: 100 records
    then 7 in two batches, ListOffsets 101, end 107), and Faust's table recovery stops there, losing
    the rest of the changelog. The high watermark in a fetch response is right, so each partition's
    last batch is fetched (from the offset before the reported end) and the watermark read back.
    Never below `reported`; partitions reported empty are left as they are."""
    wanted = {tp: n for tp, n in reported.items() if n and n > 0}
    if not wanted:
        return dict(reported)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "iu-end-offsets", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 10, "log_level": QUIET})
    try:
        c.assign([TopicPartition(topic, partition, n - 1) for (topic, partition), n in wanted.items()])
        pending, deadline = set(wanted), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None:  # a record or the partition's end: either way a fetch response came back
                pending.discard((m.topic(), m.partition()))
        if pending:
            raise BrokerError(f"no fetch response within {timeout:g} s for {sorted(pending)}")
        read = {tp: c.get_watermark_offsets(TopicPartition(*tp), cached=True)[1] for tp in wanted}
    finally:
        c.close()
    return {**reported, **{tp: max(n, read[tp]) for tp, n in wanted.items()}}


def present_offsets(bootstrap: str, ranges: Mapping[tuple[str, int], tuple[int, int]], timeout: float = 10.0
                    ) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """Which offsets in each partition's [low, high) hold records a consumer is given, read with a
    plain consumer of its own: per partition, (how far the answer reaches, the offsets found).
    Offsets below the reach that are not found hold no record: transaction markers, records
    deleted (a start below the log start resets to it) or compacted away. Read uncommitted, as the
    worker reads: an aborted transaction's records are delivered, so they count as present.
    A partition that does not answer in `timeout` reaches only as far as it was read."""
    if not ranges:
        return {}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "iu-present-offsets", "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": "read_uncommitted",
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "log_level": QUIET})
    found: dict[tuple[str, int], list[int]] = {tp: [] for tp in ranges}
    reach = {tp: low for tp, (low, _) in ranges.items()}
    try:
        c.assign([TopicPartition(topic, partition, low) for (topic, partition), (low, _) in ranges.items()])
        pending, deadline = set(ranges), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is None or (tp := (m.topic(), m.partition())) not in pending:
                continue
            high, err = ranges[tp][1], m.error()
            if err is not None:
                if err.code() == PARTITION_EOF:  # read to the end: nothing more in range
                    reach[tp] = high
                    pending.discard(tp)
                continue
            if m.offset() < high:
                found[tp].append(m.offset())
            reach[tp] = min(high, m.offset() + 1)
            if reach[tp] >= high:
                pending.discard(tp)
    finally:
        c.close()
    return {tp: (reach[tp], found[tp]) for tp in ranges}


def prepare_topics(settings: Settings, bootstrap: str) -> int:
    """Every topic the worker uses, Faust's own included; returns their replication factor. The
    changelog is compacted, as Faust would create it: it keeps each user's latest state; so are the
    catalog (each item's latest record) and the model control topic."""
    topics = {**all_topics(settings.scenarios, settings.partitions), **internal_topics(settings)}
    compact = {"cleanup.policy": "compact"}
    return create_topics(bootstrap, topics, settings.replication_factor,
                         {name: compact for name in (changelog_topic(settings), *COMPACTED)})
