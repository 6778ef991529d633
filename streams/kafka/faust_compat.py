"""Every private name of Faust, aiokafka and mode the worker overrides or calls, in one module: the
mended consumer transport and the batch's table write. faust-streaming, aiokafka and mode-streaming
are pinned in pyproject.toml; tests/test_internals.py names any of these names that changed. The
evidence behind each mend is in docs/decisions/0005-architecture-and-layers.md and RESULTS.md.

1. Seeking to committed offsets. After each rebalance Faust seeks every assigned partition to its
   committed offset, so that records fetched while the partitions were being assigned (which Faust
   drops: its flow is stopped then) are fetched again. aiokafka's `seek_to_committed` only seeks
   partitions whose committed offset is above 0: a partition with none (a new group, or one whose
   worker died before its first commit) keeps the position of the dropped records, and every event
   fetched before the seek is skipped. Here such a partition is reset as the consumer's
   `auto_offset_reset` says, and one committed at 0 is sought to 0, on every broker. Where each
   partition was sought to is handed to `on_seek`: the agent's continuity check anchors its
   expectations there (streams/kafka/continuity.py). The target, not the position read back: Faust
   resumes the stream partitions before this seek and its fetcher keeps running, so the position
   read right after it may have moved on to the partition's end.
2. The fetch wait. Faust asks the broker to hold each fetch up to 1.5 s for data. Apache Kafka
   answers as soon as a record arrives; Tansu holds the request for the whole wait even while records
   arrive, which puts the wait under every event's latency. The embedded profile therefore polls
   with a short wait (streams/kafka/profiles.py); the production profile keeps Faust's.
3. The per-message drain. Faust's drain loop hands each fetched message to its channels through
   mode's `Service.wait_first(callback(message), suspend_flow.wait())`, four asyncio tasks and a trip
   through the event loop per message, about 100 us against the callback's 0.3 us. The callback
   almost always finishes without suspending, so the mended consumer runs its first step in place
   and only races it against the events, the stock way, when it does suspend.
4. Commits. Faust commits the end of the first run of acknowledged offsets, and counts as
   acknowledged every offset its drain saw skipped: records it fetched and then lost would be
   committed past, and where offsets skip between two fetches (a transaction marker, deleted records)
   it never commits that partition again. Given `commit_at`, the mended consumer commits what that
   returns instead: the agent's next expected offset, below which every record has been processed or
   holds none.
5. End offsets. Table recovery reads each changelog partition up to the end offset ListOffsets
   reports; given `end_offsets`, the mended consumer corrects what the broker reported first. On
   Tansu that report is short of the end after a multi-record batch (`admin.end_offsets_read`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode.services import WaitResults


async def seek_to_committed_or_reset(consumer: aiokafka.AIOKafkaConsumer, reset: str,
                                     skip_topics: set[str]) -> tuple[Mapping[TP, int | None], dict[TP, int]]:
    """aiokafka's `seek_to_committed`, then the partitions it leaves alone (no committed offset, or 0)
    put where a fresh consumer would start: offset 0, or the `reset` policy ("earliest"/"latest").
    `skip_topics` (table changelogs) keep their position: recovery seeks those itself. Returns the
    committed offsets (as aiokafka's seek does) and the offset every other partition was sought to:
    the seek's target, not the position read back after it, which the fetcher, still running,
    may already have moved on (then what it fetched in between is taken for seen)."""
    committed = await consumer.seek_to_committed()
    mine = {tp: offset for tp, offset in committed.items() if tp.topic not in skip_topics}
    unset = [tp for tp, offset in mine.items() if offset is None]
    found = (await (consumer.end_offsets if reset == "latest" else consumer.beginning_offsets)(unset)) if unset else {}
    targets = {}
    for tp, offset in mine.items():
        if not offset:  # aiokafka sought only those committed above 0
            offset = found.get(tp, 0)
            consumer.seek(tp, offset)
        targets[TP(tp.topic, tp.partition)] = offset
    return committed, targets


class _Resumed(Awaitable[Any]):
    """A coroutine already run to its first suspension, on `pending`, as an awaitable that drives it
    on from there in whichever task awaits it (a task cannot adopt a started coroutine)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.pending
        while True:
            thrown: BaseException | None = None
            try:
                yield pending
            except BaseException as exc:  # a cancellation thrown into the awaiting task goes on into coro
                thrown = exc
            try:
                pending = coro.send(None) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                return done.value


async def wait_first_in_place(wait_first: Callable[..., Awaitable[WaitResults]], settled: bool,
                              first: Any, *others: Any) -> WaitResults:
    """`wait_first(first, *others)`, without its tasks when `first` is a coroutine that finishes
    without suspending while `settled` (none of the others, nor the service's stopped and crashed
    events, is done): then `first` is the one winner, as it would have been the stock way."""
    if not (settled and asyncio.iscoroutine(first)):
        return await wait_first(first, *others)
    try:
        pending = first.send(None)
    except BaseException as exc:
        for other in others:  # never awaited: closed, as wait_first's cancellation would have ended them
            if asyncio.iscoroutine(other):
                other.close()
        if isinstance(exc, StopIteration):
            return WaitResults([first], [exc.value], False)
        raise
    return await wait_first(_Resumed(first, pending), *others)


def transport(app: faust.App, fetch_max_wait_ms: int | None = None,
              on_seek: Callable[[Mapping[TP, int]], None] | None = None,
              commit_at: Callable[[list[TP], Mapping[TP, int]], Mapping[TP, int]] | None = None,
              end_offsets: Callable[[Mapping[TP, int]], Mapping[TP, int]] | None = None) -> driver.Transport:
    """The app's consumer transport with the committed-offset seek mended; with `fetch_max_wait_ms`,
    its fetches wait at most that long at the broker; `on_seek` is given the offset every stream
    partition was sought to, after each seek; `commit_at` turns the partitions with acknowledgements
    and the offsets Faust would commit of them
    into those it may. Both are called in the app's event loop. `end_offsets` corrects the end
    offsets the broker reports (blocking: it runs in a thread of its own)."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            if fetch_max_wait_ms is not None:
                consumer._fetch_max_wait_ms = fetch_max_wait_ms  # private: read by AIOKafkaConsumer.start()
            return consumer

        async def seek_to_committed(self) -> Mapping[TP, int | None]:
            committed, targets = await self.call_thread(seek_to_committed_or_reset, self._ensure_consumer(),
                                                        self.app.conf.consumer_auto_offset_reset,
                                                        self.app.tables.changelog_topics)  # a new set each call
            if on_seek is not None:
                on_seek(targets)
            return committed

        async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
            reported = await super().highwaters(*partitions)
            if end_offsets is None:
                return reported
            return await asyncio.to_thread(end_offsets, reported)

    class MendedConsumer(driver.Consumer):
        async def wait_first(self, *coros: Any, timeout: float | None = None) -> WaitResults:
            """Faust's drain loop calls this as `wait_first(callback(message), self.suspend_flow.wait())`,
            once a message: run in place while no event it races is set. (Its one other caller
            waits on an event, not a coroutine, and takes the stock path. A caller racing other
            coroutines would be answered right only while those are not already done.)"""
            if timeout is not None:
                return await super().wait_first(*coros, timeout=timeout)
            settled = not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())
            return await wait_first_in_place(super().wait_first, settled, *coros)

        def _filter_committable_offsets(self, tps: Any) -> dict[TP, int]:
            """Faust's choice of offsets to commit, or `commit_at`'s. Faust records what it commits
            as its own committed offset, and counts its acknowledgements from there."""
            tps = list(tps)
            offsets = super()._filter_committable_offsets(tps)  # also drains Faust's acknowledgements
            if commit_at is None:
                return offsets
            return {tp: n for tp, n in commit_at(tps, offsets).items() if self._should_commit(tp, n)}

        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class MendedTransport(driver.Transport):
        Consumer = MendedConsumer

    return MendedTransport(app.conf.broker_consumer, app)


def write_states(stream: faust.StreamT, table: faust.Table, last: Mapping[bytes, faust.types.EventT],
                 states: Mapping[str, bytes]) -> list[Awaitable[Any]]:
    """Each user's new state into `table` and its changelog, from a whole micro-batch; returns the
    changelog sends. The RocksDB store files a write under the partition of the event being
    processed, which a batch does not have: each user's write runs as `last[key]`, the user's last
    event on the user's own partition. Store and changelog are written apart (what
    `table[key] = raw` does) to keep each send. Faust has no public setter for the current event."""
    sent = []
    current = stream.current_event
    for uid, raw in states.items():
        key = uid.encode()
        stream._set_current_event(last[key])
        table.data[key] = raw
        sent.append(table.send_changelog(None, key, raw))
    stream._set_current_event(current)  # the take buffer reads it back
    return sent
