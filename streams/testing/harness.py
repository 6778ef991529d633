"""The batch path in process, without a broker (as bytewax's TestingSource/TestingSink and Faust's
`test_context`): records go through the worker's own batch handler, processor and monitor, and what
it would write (states, produced records, seeks) is kept in memory for the test to read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams.core.batch import Record
from streams.kafka.continuity import Continuity, Present
from streams.monitoring.monitor import Monitor
from streams.settings import Settings
from streams.worker.batches import BatchHandler
from streams.worker.processor import Processor
from streams.worker.stats import Stats


@dataclass(frozen=True)
class Produced:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int | None  # None: the producer's partitioner picks it


@dataclass
class MemoryIO:
    """The table as a dict, the topics as a list; every offset holds a record."""

    table: dict[bytes, bytes] = field(default_factory=dict)
    produced: list[Produced] = field(default_factory=list)
    seeks: list[dict[TP, int]] = field(default_factory=list)

    def stored(self, key: bytes) -> bytes | None:
        return self.table.get(key)

    def write_states(self, states: Mapping[str, bytes], owner: Mapping[bytes, int]) -> list[Awaitable[Any]]:
        self.table.update({uid.encode(): raw for uid, raw in states.items()})
        return []

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = (),
                   partition: int | None = None) -> Awaitable[Any]:
        self.produced.append(Produced(topic, key, value, dict(headers), partition))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def seek(self, partitions: Mapping[TP, int]) -> None:
        self.seeks.append(dict(partitions))

    async def present(self, ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, Present]:
        return {tp: Present(low, high, tuple(range(low, high))) for tp, (low, high) in ranges.items()}

    def on(self, topic: str) -> list[Produced]:
        return [p for p in self.produced if p.topic == topic]


class BatchHarness:
    """A worker's batch path over `processor`, counting on the processor's metrics."""

    def __init__(self, settings: Settings, processor: Processor) -> None:
        self.metrics = processor.metrics
        self.io = MemoryIO()
        self.stats = Stats()
        self.continuity = Continuity()
        self.assigned: set[TP] = set()
        self.monitor = Monitor.from_settings(settings, processor.encoder.cfg.max_len, processor.catalog.categories,
                                             self.metrics)
        self.handler = BatchHandler(settings, processor, self.continuity, self.monitor, self.metrics, self.stats,
                                    self._inline)

    @staticmethod
    async def _inline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    def events(self, records: Sequence[Record]) -> None:
        self._assign(records)
        asyncio.run(self.handler.events(records, self.io))

    def items(self, records: Sequence[Record]) -> None:
        self._assign(records)
        asyncio.run(self.handler.items(records, self.io))

    def _assign(self, records: Sequence[Record]) -> None:
        """A partition seen for the first time is assigned from offset 0, as a new group's first seek
        puts it; those assigned before keep their expectations."""
        new = {TP(r.topic, r.partition) for r in records} - self.assigned
        if new:
            self.assigned |= new
            self.continuity.anchor({tp: self.continuity.expected.get(tp, 0) for tp in self.assigned},
                                   time.monotonic())
