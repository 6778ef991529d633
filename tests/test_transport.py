"""The mended seek to committed offsets (streams/transport.py), against a real broker with aiokafka.

A worker's consumer may fetch (and Faust drop) records while its partitions are being assigned; the
seek to committed offsets after the rebalance is what brings them back. These tests fetch past the
committed offsets first, as that window does, then seek.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import create_topics
from streams.transport import seek_to_committed_or_reset

RECORDS = 10  # per partition
COMMITTED = {0: 5, 1: None, 2: 0}  # partition -> committed offset (None: never committed)


async def positions_after_seek(bootstrap: str, topic: str, seek) -> dict[int, int]:
    """Partition -> position after `seek(consumer)`, every partition having been read to its end first."""
    tps = [TopicPartition(topic, p) for p in COMMITTED]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for tp in tps:
            for i in range(RECORDS):
                await producer.send_and_wait(topic, f"{i}".encode(), partition=tp.partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g-{topic}-{time.time_ns()}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: COMMITTED[tp.partition] for tp in tps if COMMITTED[tp.partition] is not None})
        for tp in tps:  # the records a rebalance window fetched and Faust dropped
            consumer.seek(tp, RECORDS)
        await seek(consumer)
        return {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


def run(broker: str, name: str, seek) -> dict[int, int]:
    create_topics(broker, {name: len(COMMITTED)})
    return asyncio.run(asyncio.wait_for(positions_after_seek(broker, name, seek), 60))


def test_stock_seek_leaves_uncommitted_partitions_past_the_dropped_records(broker):
    """What the mend is for; if aiokafka changes this, the mend may be dropped."""
    got = run(broker, "t.seek.stock", lambda c: c.seek_to_committed())
    assert got == {0: 5, 1: RECORDS, 2: RECORDS}


@pytest.mark.parametrize(("reset", "uncommitted"), [("earliest", 0), ("latest", RECORDS)])
def test_mended_seek_puts_every_partition_where_a_fresh_consumer_starts(broker, reset, uncommitted):
    got = run(broker, f"t.seek.{reset}", lambda c: seek_to_committed_or_reset(c, reset, set()))
    assert got == {0: 5, 1: uncommitted, 2: 0}


def test_mended_seek_leaves_changelogs_to_recovery(broker):
    got = run(broker, "t.seek.changelog", lambda c: seek_to_committed_or_reset(c, "earliest", {"t.seek.changelog"}))
    assert got == {0: 5, 1: RECORDS, 2: RECORDS}
