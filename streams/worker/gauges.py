"""The worker's 2 s timer: gauges cheaper to read now and then than to keep exact on every write, the
pending Milvus writes retried when no events come, consumer lag, and stalled partitions."""

from __future__ import annotations

import asyncio

from streams.worker.batches import BatchHandler
from streams.worker.context import WorkerContext
from streams.worker.faust_io import FaustIO

GAUGE_INTERVAL_S = 2.0


async def refresh(ctx: WorkerContext, handler: BatchHandler) -> None:
    await asyncio.to_thread(ctx.size.scan)  # every value: off the loop (streams/worker/tablescan.py)
    ctx.metrics.users.set(ctx.size.scanned_users)
    ctx.metrics.state_bytes.set(ctx.size.state_bytes)
    ctx.metrics.catalog.set(len(ctx.processor.catalog))
    await ctx.offload(ctx.processor.vectors.flush)  # converge after an outage even when no events come
    consumer = ctx.app.consumer
    if consumer is None:
        return
    ctx.metrics.lag.clear()  # partitions revoked since the last refresh must disappear
    positions = {}
    for tp in consumer.assignment():
        if tp.topic not in ctx.consumed:
            continue
        positions[tp] = await consumer.position(tp) or 0
        high = consumer.highwater(tp) if tp.topic in ctx.processor.topic_index else None
        if high is not None and high >= 0:
            done = ctx.continuity.expected.get(tp, positions[tp])  # before the first seek anchors it: position
            ctx.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(high - done, 0))
    if not (ctx.app.rebalancing or ctx.app.in_recovery):  # recovery seeks every partition itself
        await handler.stalled(positions, FaustIO(ctx))
