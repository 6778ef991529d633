"""The agents' work on each micro-batch: records admitted in offset order (gaps fetched again),
misrouted events sent to their key's partition, the processor run on the compute thread, states
written, outputs produced and delivered, and only then the offsets marked processed (at least once;
the state's watermarks make redelivery harmless).

The handler reaches Kafka and the state table only through a `BatchIO`: Faust's in the worker
(streams/worker/faust_io.py), an in-memory one in the test harness (streams/testing/harness.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from faust.types import TP

from models.data.contract import REROUTED_HEADER
from streams.core.batch import DeadLetter, Record
from streams.core.decode import CatalogRecord, Rejected, decode_item
from streams.kafka.continuity import Continuity, Present
from streams.kafka.delivery import delivered
from streams.kafka.topics import DEAD_LETTERS, DRIFT, RECOMMENDATIONS, partition_of
from streams.monitoring.metrics import WorkerMetrics
from streams.monitoring.monitor import Monitor
from streams.settings import Settings
from streams.worker.processor import Processor
from streams.worker.stats import Stats

log = logging.getLogger(__name__)
Headers = Sequence[tuple[str, bytes]]


class BatchIO(Protocol):
    """What a batch reads and writes outside the process."""

    def stored(self, key: bytes) -> bytes | None:
        """A user's state as the table holds it."""

    def write_states(self, states: Mapping[str, bytes], owner: Mapping[bytes, int]) -> list[Awaitable[Any]]:
        """Each user's new state into the table and its changelog; the sends to wait for. `owner`: each
        user key's own partition (its murmur2 hash), computed once per batch."""

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers = (),
                   partition: int | None = None) -> Awaitable[Any]:
        """Produces one record; returns what to wait for until the broker acknowledged it."""

    async def seek(self, partitions: Mapping[TP, int]) -> None:
        """Fetches the partitions again from these offsets."""

    async def present(self, ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, Present]:
        """What the broker holds in each partition's [low, high)."""


class BatchHandler:
    def __init__(self, settings: Settings, processor: Processor, continuity: Continuity, monitor: Monitor,
                 metrics: WorkerMetrics, stats: Stats,
                 offload: Callable[..., Awaitable[Any]]) -> None:
        """`offload(fn, *args)`: runs `fn` where heavy work may block (the compute thread)."""
        self.settings, self.processor, self.continuity, self.monitor = settings, processor, continuity, monitor
        self.metrics, self.stats, self.offload = metrics, stats, offload

    async def events(self, batch: Sequence[Record], io: BatchIO) -> None:
        """A micro-batch of events: records → processor → table writes → outputs → delivery → processed."""
        consumed = await self.admitted(batch, io)
        if not consumed:
            return
        owner = {k: partition_of(k, self.settings.partitions) for k in {r.key for r in consumed if r.key}}
        records, sent = await self.reroute(consumed, owner, io)
        stored = {k.decode(errors="replace"): io.stored(k) for k in {r.key for r in records if r.key}}
        result = await self.offload(self.processor.process, records, stored)
        with self.metrics.stage("table"):
            sent += io.write_states(result.states, owner)
        with self.metrics.stage("monitor"):
            detections = self.monitor.observe(result, len(records))
        with self.metrics.stage("produce"):
            for key, value in result.recommendations:
                sent.append(await io.send(RECOMMENDATIONS, key, value))
            sent += await self.dead_letter(result.dead_letters, io)
            for d in detections:
                sent.append(await io.send(DRIFT, d.detector.encode(), json.dumps(d.as_dict()).encode()))
        with self.metrics.stage("deliver"):
            await delivered(sent, self.settings.delivery_timeout_s)
        self.continuity.processed(consumed, time.monotonic())
        self.stats.counts.update({"events_in": len(consumed), "recommendations_out": len(result.recommendations),
                                  "withheld": result.withheld, "batches": 1, "misrouted": len(consumed) - len(records),
                                  **result.outcomes})

    async def items(self, batch: Sequence[Record], io: BatchIO) -> None:
        """Catalog records: applied (the store guard keeps them through an outage) or dead-lettered."""
        records = await self.admitted(batch, io)
        decoded = [(r, decode_item(r.value)) for r in records]
        good = [it for _, it in decoded if isinstance(it, CatalogRecord)]
        if good:
            await self.offload(self.processor.add_items, [it.item for it in good])
        rejected = [DeadLetter(r, it.reason, it.detail) for r, it in decoded if isinstance(it, Rejected)]
        await delivered(await self.dead_letter(rejected, io), self.settings.delivery_timeout_s)
        self.continuity.processed(records, time.monotonic())
        clipped = sum(it.clipped for it in good)
        self.metrics.titles_clipped.inc(clipped)
        self.stats.counts.update({"items_in": len(records), "items_applied": len(good), "titles_clipped": clipped})

    async def admitted(self, records: Sequence[Record], io: BatchIO) -> list[Record]:
        """The records that continue each partition's offsets (streams/kafka/continuity.py)."""
        admission = self.continuity.admit(records)
        if admission.refetch:  # a gap: a loss, or offsets that hold no record? The broker knows
            admission = self.continuity.admit(records, await io.present(admission.gaps()))
        self.skipped(admission.skipped)
        await self.refetch(admission.refetch, "gap", io)
        return admission.records

    async def stalled(self, positions: Mapping[TP, int], io: BatchIO) -> None:
        """Partitions fetched past their expectation that have not moved: passed over up to the
        position where nothing in between holds a record, fetched again where something does."""
        stuck = self.continuity.stalled(positions, time.monotonic())
        if not stuck:
            return
        known = await io.present({tp: (want, positions[tp]) for tp, want in stuck.items()})
        empty = {tp for tp, want in stuck.items() if known[tp].empty_between(want, positions[tp])}
        self.skipped({tp: self.continuity.skip(tp, positions[tp], time.monotonic()) for tp in empty})
        await self.refetch({tp: want for tp, want in stuck.items() if tp not in empty}, "stall", io)

    async def refetch(self, partitions: dict[TP, int], reason: str, io: BatchIO) -> None:
        for tp, offset in partitions.items():
            log.warning("fetching %s:%d again from offset %d (%s): records past it were lost before the agent",
                        tp.topic, tp.partition, offset, reason)
            self.metrics.refetches.labels(reason).inc()
        if partitions:
            await io.seek(partitions)

    def skipped(self, counts: Mapping[TP, int]) -> None:
        for tp, n in counts.items():
            log.info("%s:%d: %d offsets hold no record (transaction markers, deleted or compacted records)",
                     tp.topic, tp.partition, n)
            self.metrics.offsets_skipped.inc(n)
            self.stats.counts["offsets_skipped"] += n

    async def dead_letter(self, letters: list[DeadLetter], io: BatchIO) -> list[Awaitable[Any]]:
        sent = []
        for d in letters:
            sent.append(await io.send(DEAD_LETTERS, d.key, d.value, d.headers()))
            self.metrics.dead_letters.labels(d.reason.value).inc()
        return sent

    async def reroute(self, records: list[Record], owner: Mapping[bytes, int], io: BatchIO
                      ) -> tuple[list[Record], list[Awaitable[Any]]]:
        """Events on another partition than their key's `owner` partition (a producer not on the
        murmur2 partitioner) would split a user's state across partitions and workers: each is
        produced again to its key's partition, where its owner applies it, and counted. Returns the
        others (keyless events among them: they are dead-lettered)."""
        own: list[Record] = []
        sent: list[Awaitable[Any]] = []
        for r in records:
            if r.key is None or owner[r.key] == r.partition:
                own.append(r)
                continue
            came_from = [(REROUTED_HEADER, f"{r.partition}:{r.offset}".encode())]
            sent.append(await io.send(r.topic, r.key, r.value, came_from, owner[r.key]))
            self.metrics.misrouted.labels(r.topic).inc()
        return own, sent
