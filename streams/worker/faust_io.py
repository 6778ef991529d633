"""The batch handler's reads and writes in a running worker: Faust's table and topics, the consumer's
seeks, and the broker asked which offsets hold records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP

from streams.core.batch import Record
from streams.kafka.admin import present_offsets
from streams.kafka.continuity import Present
from streams.kafka.faust_compat import write_states
from streams.worker.context import WorkerContext


def as_record(event: faust.types.EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.key, m.value or b"", int(m.timestamp * 1000))


class FaustIO:
    """For one micro-batch (`stream`, `batch`), or for the timer's checks (neither)."""

    def __init__(self, ctx: WorkerContext, stream: faust.StreamT | None = None,
                 batch: Sequence[faust.types.EventT] = ()) -> None:
        self.ctx, self.stream, self.batch = ctx, stream, batch

    def stored(self, key: bytes) -> bytes | None:
        return self.ctx.table.get(key)

    def write_states(self, states: Mapping[str, bytes], owner: Mapping[bytes, int]) -> list[Awaitable[Any]]:
        assert self.stream is not None, "states are written from an agent's batch"
        # each user's last event on the user's own partition (a misrouted copy is on another one)
        last = {e.message.key: e for e in self.batch if owner.get(e.message.key) == e.message.partition}
        return write_states(self.stream, self.ctx.table, last, states)

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = (),
                   partition: int | None = None) -> Awaitable[Any]:
        return await self.ctx.topics.by_name[topic].send(key=key, value=value, headers=headers or None,
                                                          partition=partition)

    async def seek(self, partitions: Mapping[TP, int]) -> None:
        await self.ctx.app.consumer.seek_wait(partitions)  # in the consumer's own thread, as Faust's recovery

    async def present(self, ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, Present]:
        answer = await asyncio.to_thread(present_offsets, self.ctx.bootstrap, ranges)
        return {TP(*tp): Present(ranges[TP(*tp)][0], reach, tuple(found)) for tp, (reach, found) in answer.items()}
