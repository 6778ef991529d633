"""The mended consumer (streams/kafka/faust_compat.py): the seek to committed offsets, against a real broker
with aiokafka, and the drain's in-place `wait_first`, on a plain mode service.

A worker's consumer may fetch (and Faust drop) records while its partitions are being assigned; the
seek to committed offsets after the rebalance is what brings them back. These tests fetch past the
committed offsets first, as that window does, then seek.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP
from mode import Service

from streams.kafka.admin import create_topics
from streams.kafka.faust_compat import seek_to_committed_or_reset, wait_first_in_place

RECORDS = 10  # per partition
COMMITTED = {0: 5, 1: None, 2: 0}  # partition -> committed offset (None: never committed)


async def positions_after_seek(bootstrap: str, topic: str, seek) -> tuple[dict[int, int], Any]:
    """Partition -> position after `seek(consumer)`, every partition having been read to its end
    first; and what the seek returned."""
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
        result = await seek(consumer)
        return {tp.partition: await consumer.position(tp) for tp in tps}, result
    finally:
        await consumer.stop()


def run(broker: str, name: str, seek) -> tuple[dict[int, int], Any]:
    create_topics(broker, {name: len(COMMITTED)})
    return asyncio.run(asyncio.wait_for(positions_after_seek(broker, name, seek), 60))


def test_stock_seek_leaves_uncommitted_partitions_past_the_dropped_records(broker):
    """What the mend is for; if aiokafka changes this, the mend may be dropped."""
    got, _ = run(broker, "t.seek.stock", lambda c: c.seek_to_committed())
    assert got == {0: 5, 1: RECORDS, 2: RECORDS}


@pytest.mark.parametrize(("reset", "uncommitted"), [("earliest", 0), ("latest", RECORDS)])
def test_mended_seek_puts_every_partition_where_a_fresh_consumer_starts(broker, reset, uncommitted):
    name = f"t.seek.{reset}"
    got, (committed, targets) = run(broker, name, lambda c: seek_to_committed_or_reset(c, reset, set()))
    assert got == {0: 5, 1: uncommitted, 2: 0}
    assert {tp.partition: n for tp, n in committed.items()} == COMMITTED  # what Faust's seek records
    assert targets == {TP(name, p): n for p, n in got.items()}  # where it sought: the agent anchors there


def test_mended_seek_leaves_changelogs_to_recovery(broker):
    name = "t.seek.changelog"
    got, (_, targets) = run(broker, name, lambda c: seek_to_committed_or_reset(c, "earliest", {name}))
    assert got == {0: 5, 1: RECORDS, 2: RECORDS} and targets == {}


def race(body: Callable[[Service, asyncio.Event], Awaitable[Any]]) -> Any:
    """`body(service, flow_event)` on a started mode service, as the drain loop has them, bounded."""
    async def main() -> Any:
        service, flow = Service(), asyncio.Event()
        await service.start()
        try:
            return await asyncio.wait_for(body(service, flow), 10)
        finally:
            await service.stop()
    return asyncio.run(main())


def test_a_callback_that_does_not_suspend_runs_in_the_drain_task_and_wins():
    async def body(service: Service, flow: asyncio.Event) -> tuple[bool, Any, str]:
        async def callback() -> asyncio.Task:
            return asyncio.current_task()
        waiting = flow.wait()
        done = await wait_first_in_place(service.wait_first, True, callback(), waiting)
        return done.results[0] is asyncio.current_task(), done, inspect.getcoroutinestate(waiting)
    in_place, done, waiting = race(body)
    assert in_place and len(done.done) == 1 and not done.stopped
    assert waiting == inspect.CORO_CLOSED  # not left to warn "never awaited"


def test_while_an_event_is_set_the_stock_race_runs_the_callback_in_its_own_task():
    async def body(service: Service, flow: asyncio.Event) -> bool:
        async def callback() -> asyncio.Task:
            return asyncio.current_task()
        done = await wait_first_in_place(service.wait_first, False, callback(), flow.wait())
        return done.results[0] is asyncio.current_task()
    assert race(body) is False


def test_a_callback_that_suspends_is_driven_on_to_its_result():
    async def body(service: Service, flow: asyncio.Event) -> list[Any]:
        async def callback() -> str:
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            return "delivered"
        return (await wait_first_in_place(service.wait_first, True, callback(), flow.wait())).results
    assert race(body) == ["delivered"]


def test_a_suspended_callback_loses_to_the_flow_event_and_is_cancelled_inside():
    async def body(service: Service, flow: asyncio.Event) -> tuple[Any, list[str]]:
        seen: list[str] = []
        async def callback() -> None:
            try:
                for _ in range(1000):  # bare yields: the cancellation is thrown in, no awaited future is cancelled
                    await asyncio.sleep(0)
                seen.append("ran on")
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
        asyncio.get_running_loop().call_soon(flow.set)
        done = await wait_first_in_place(service.wait_first, True, callback(), flow.wait())
        await asyncio.sleep(0)  # the cancellation is delivered on the loop's next turn
        return done, seen
    done, seen = race(body)
    assert len(done.done) == 1 and done.results == [True] and seen == ["cancelled"]


def test_a_callback_that_raises_at_once_raises_and_closes_the_others():
    async def body(service: Service, flow: asyncio.Event) -> str:
        async def callback() -> None:
            raise ValueError("bad message")
        waiting = flow.wait()
        with pytest.raises(ValueError, match="bad message"):
            await wait_first_in_place(service.wait_first, True, callback(), waiting)
        return inspect.getcoroutinestate(waiting)
    assert race(body) == inspect.CORO_CLOSED
