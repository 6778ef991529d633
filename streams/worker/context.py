"""What the worker's agents, views and gauges share: the app, its topics and table, the processor, the
continuity check, the counters, and the one compute thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faust

from streams.kafka.continuity import Continuity
from streams.kafka.profiles import tune_transport
from streams.kafka.topics import DEAD_LETTERS, DRIFT, ITEMS, RECOMMENDATIONS, TABLE, events_topic
from streams.monitoring.metrics import WorkerMetrics
from streams.monitoring.monitor import Monitor
from streams.settings import Settings
from streams.worker.processor import Processor
from streams.worker.routing import Admission
from streams.worker.stats import Stats
from streams.worker.tablescan import TableSize

RAW = {"key_type": bytes, "value_type": bytes}  # serialized "raw": the app's default (streams/worker/app.py)
T = TypeVar("T")


class Topics:
    """The app's topics: those the agents consume and those the worker produces to."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        names = [events_topic(s) for s in settings.scenarios]
        self.events = app.topic(*names, **RAW)
        self.items = app.topic(ITEMS, **RAW)
        # produced to, by name: each event topic alone (a misrouted event goes to its key's partition)
        partitions = {**dict.fromkeys(names, settings.partitions), RECOMMENDATIONS: settings.partitions,
                      DEAD_LETTERS: 1, DRIFT: 1}
        self.by_name = {name: app.topic(name, partitions=n, **RAW) for name, n in partitions.items()}


class WorkerContext:
    def __init__(self, app: faust.App, settings: Settings, bootstrap: str, processor: Processor,
                 metrics: WorkerMetrics) -> None:
        self.app, self.settings, self.bootstrap, self.processor = app, settings, bootstrap, processor
        self.metrics = metrics
        self.continuity = Continuity()  # next offset to process per partition: also the lag gauge's baseline
        self.consumed = {*processor.topic_index, ITEMS}  # the agents' topics (Faust also assigns its leader topic)
        tune_transport(app, settings, self.continuity, self.consumed)  # before any topic is declared
        self.topics = Topics(app, settings)
        # use_partitioner: the changelog partition is the key's hash (murmur2, as producers must key too),
        # which lets a micro-batch write its users outside per-event stream iteration.
        self.table = app.Table(TABLE, default=None, partitions=settings.partitions, use_partitioner=True, **RAW)
        self.stats = Stats()
        self.size = TableSize(self.table)
        self.admission = Admission(settings.http_queue)
        self.monitor = Monitor.from_settings(settings, processor.encoder.cfg.max_len, processor.catalog.categories,
                                             metrics)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iu-compute")  # torch + Milvus in turn
        self.batch_lock = asyncio.Lock()  # held through each micro-batch: a model switch waits for its end

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the compute thread, so that the event loop keeps heartbeating meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
