"""The Faust app: its settings, and the agents, views and timer wired to one shared context.

The agents are thin: they turn micro-batches of consumed messages into records and hand them to the
batch handler (streams/worker/batches.py), which runs the heavy work (encoder, Milvus) on one
compute thread so that the event loop keeps heartbeating.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from streams.core.batching import Linger
from streams.kafka.delivery import or_exit_uncommitted
from streams.kafka.profiles import broker_options
from streams.kafka.topics import MODELS
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.worker.batches import BatchHandler
from streams.worker.context import WorkerContext
from streams.worker.control import CONTROL_INTERVAL_S, ModelControl
from streams.worker.faust_io import FaustIO, as_record
from streams.worker.gauges import GAUGE_INTERVAL_S, refresh
from streams.worker.processor import Processor
from streams.worker.views import WorkerViews

log = logging.getLogger(__name__)
TAKE_WITHIN_S = 0.02  # Faust's take yields what came in within this; Linger adds the rest
CATALOG_BATCH = 1024


def make_app(settings: Settings, bootstrap: str, replication: int) -> faust.App:
    """`replication`: the replication factor of topics Faust would create itself (prepare_topics's)."""
    return faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        store=settings.store,
        datadir=str(settings.state_dir),  # not Faust's default, ./<app_id>-data in the cwd
        processing_guarantee=settings.guarantee,
        topic_partitions=settings.partitions,
        web_bind=settings.web_host,
        web_host=settings.advertised_host,  # Faust's canonical URL: what other workers proxy requests to
        topic_replication_factor=replication,
        web_port=settings.web_port,
        key_serializer="raw",  # topics and table alike: state values are our own compact bytes
        value_serializer="raw",
        # the documented API only: Faust's /router and /table views would serve raw state to anyone
        web_router_enabled=False, web_tables_enabled=False, web_graph_enabled=False, web_stats_enabled=False,
        **broker_options(settings),
    )


def build_app(settings: Settings, bootstrap: str, processor: Processor, metrics: WorkerMetrics,
              replication: int = 1) -> faust.App:
    app = make_app(settings, bootstrap, replication)
    ctx = WorkerContext(app, settings, bootstrap, processor, metrics)
    handler = BatchHandler(settings, processor, ctx.continuity, ctx.monitor, metrics, ctx.stats, ctx.offload)
    control = ModelControl(ctx)
    metrics.model.info(processor.model_labels())

    @app.agent(ctx.topics.events)
    async def update_interests(stream: faust.StreamT) -> None:
        linger = Linger(settings.batch_target, settings.batch_wait_ms / 1000, TAKE_WITHIN_S)
        async for batch in stream.take_events(settings.batch_size, within=TAKE_WITHIN_S):
            started = time.monotonic()
            async with ctx.batch_lock:
                await or_exit_uncommitted(handler.events([as_record(e) for e in batch], FaustIO(ctx, stream, batch)))
            await asyncio.sleep(linger.pause(len(batch), started, time.monotonic()))

    @app.agent(ctx.topics.items)
    async def update_catalog(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(CATALOG_BATCH, within=0.2):
            async with ctx.batch_lock:
                await or_exit_uncommitted(handler.items([as_record(e) for e in batch], FaustIO(ctx)))

    @app.timer(interval=GAUGE_INTERVAL_S)
    async def refresh_gauges() -> None:
        await refresh(ctx, handler)

    @app.timer(interval=CONTROL_INTERVAL_S)
    async def watch_models() -> None:
        try:
            await control.tick()
        except Exception:  # the broker unreachable now: the next tick tries again
            log.exception("reading %s failed", MODELS)

    WorkerViews(ctx, control).register(app)
    return app
