"""Every Prometheus metric a worker exports, as one object on one registry (the process's default
unless given, as Faust's own Prometheus sensor takes one), so that names and label sets stay
consistent and a test can read a registry of its own.

Conventions: units in names (`_seconds`, `_bytes`), `_total` counters, and only bounded labels
(scenario, action, reason, stage, operation, detector, partition, kind): never a user or item id.
Labelled series that matter before their first event are created at zero (`initialise`), so a
dashboard shows 0 rather than "no data" and `rate()` has a starting point.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from models.data.contract import ACTIONS

disable_created_metrics()  # `_created` series double the exposition and no dashboard reads them

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("decode", "state", "encode", "upsert", "search", "rerank", "table", "monitor", "produce", "deliver")
MILVUS_OPERATIONS = ("upsert_users", "upsert_items", "search", "get_items", "load")
REFETCH_REASONS = ("gap", "stall")  # see streams/kafka/continuity.py
ROW_KINDS = ("user", "item")  # streams/vectors/guard.py
ROLLOUT_OUTCOMES = ("switched", "failed")  # streams/worker/rollout.py


@contextmanager
def _timed(histogram: Histogram, label: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(label).observe(time.perf_counter() - start)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        counter, gauge = functools.partial(Counter, registry=registry), functools.partial(Gauge, registry=registry)
        histogram, info = functools.partial(Histogram, registry=registry), functools.partial(Info, registry=registry)
        self.events = counter("iu_events_consumed_total", "Events consumed, by scenario (topic), action and outcome; "
                              "outcome dead_letter has action 'invalid'", ["scenario", "action", "outcome"])
        self.dead_letters = counter("iu_dead_letters_total", "Records sent to the dead-letter topic, by reason",
                                    ["reason"])
        self.misrouted = counter("iu_events_misrouted_total",
                                 "Events found on another partition than their key's murmur2 "
                                 "partition (a producer on another partitioner), produced again to the right one",
                                 ["topic"])
        self.titles_clipped = counter("iu_catalog_titles_clipped_total",
                                      "Catalog titles cut to their byte limit (applied, "
                                      "not dead-lettered)")
        self.recommendations = counter("iu_recommendations_emitted_total", "Recommendation lists emitted, by scenario",
                                       ["scenario"])
        self.end_to_end = histogram("iu_end_to_end_latency_seconds",
                                    "From the event's Kafka record timestamp (when the "
                                    "producer sent it) to its recommendation being emitted", buckets=LATENCY_BUCKETS)
        self.stage_seconds = histogram("iu_stage_duration_seconds", "Time per micro-batch in each pipeline stage",
                                       ["stage"],
                                       buckets=STAGE_BUCKETS)
        self.batch = histogram("iu_batch_size_events", "Events per micro-batch",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
        self.model = info("iu_model", "The model the worker serves and the device its encoder runs on")
        self.rollout_progress = gauge("iu_model_rollout_progress",
                                      "Share of this worker's users whose vectors the model being rolled out "
                                      "has written (0 to 1; 1 when none is being rolled out)")
        self.rollouts = counter("iu_model_rollouts_total", "Model versions this worker started serving (switched), "
                                "or failed to prepare (failed)", ["outcome"])
        self.milvus_seconds = histogram("iu_milvus_operation_duration_seconds",
                                        "Milvus calls, each a whole micro-batch",
                                        ["operation"], buckets=STAGE_BUCKETS)
        self.milvus_errors = counter("iu_milvus_errors_total", "Milvus calls that raised", ["operation"])
        self.store_up = gauge("iu_vector_store_up", "1 while Milvus answers, 0 from a failed call until one succeeds")
        self.vectors_pending = gauge("iu_vectors_pending",
                                     "Rows waiting for Milvus to come back, by kind (user vectors, "
                                     "catalog items)", ["kind"])
        self.vectors_dropped = counter("iu_vectors_dropped_total",
                                       "Pending rows evicted past the cap, by kind; a user's is "
                                       "written again at the user's next event", ["kind"])
        self.vectors_refused = counter("iu_vectors_refused_total", "Rows Milvus refused for their own content while it "
                                       "answered (left out; not an outage), by kind", ["kind"])
        self.withheld = counter("iu_recommendations_withheld_total",
                                "Lists not emitted because Milvus was down (no stale "
                                "list is emitted instead)")
        self.lag = gauge("iu_consumer_lag_messages",
                         "Messages behind the partition's high watermark, per assigned event "
                         "partition", ["topic", "partition"])
        self.refetches = counter("iu_consumer_refetches_total",
                                 "Partitions fetched again from the next offset the agent expected, because "
                                 "records past it arrived (gap) or fetched records never arrived (stall)",
                                 ["reason"])
        self.offsets_skipped = counter("iu_offsets_skipped_total",
                                       "Offsets passed over because they hold no record (transaction "
                                       "markers, records deleted or compacted away), never fetched again")
        self.http_rejected = counter("iu_http_requests_rejected_total", "`/users/...` requests answered 503 because "
                                     "IU_HTTP_QUEUE requests were already computing or waiting for the compute thread")
        self.users = gauge("iu_users_in_state", "Users whose state this worker holds (its assigned partitions)")
        self.state_bytes = gauge("iu_state_bytes", "Bytes of user state this worker holds, all users together")
        self.catalog = gauge("iu_catalog_items", "Items the worker can recommend")
        self.gc_pause = histogram("iu_gc_pause_seconds", "Garbage collections, by generation: each one stops the whole "
                                  "worker, so a long one shows in the latency tail",
                                  ["generation"], buckets=STAGE_BUCKETS)
        self.gc_frozen = gauge("iu_gc_frozen_objects",
                               "Start-up objects kept out of garbage collection (streams/worker/heap.py)")
        self.compute_threads = gauge("iu_compute_threads",
                                     "CPU threads torch and BLAS use for the current micro-batch: one "
                                     "fewer than on full ones (a backlog), leaving a core to the event loop "
                                     "(streams/worker/threads.py)")
        self.trials = counter("iu_online_trials_total", "Prequential trials: events whose user had recommendations for "
                              "that scenario when the event arrived", ["scenario"])
        self.hits = counter("iu_online_hits_total", "Trials whose item was in the last top-K list, by recommender",
                            ["scenario", "recommender"])
        self.hit_rate = gauge("iu_online_hit_rate", "Rolling prequential hit rate@K over the last trials (River)",
                              ["scenario", "recommender"])
        self.drift = counter("iu_drift_detections_total", "Drift detections, by detector, scenario and direction",
                             ["detector", "scenario", "direction"])

    def initialise(self, scenarios: tuple[str, ...], outcomes: Iterable[str], recommenders: Iterable[str],
                   reasons: Iterable[str], detectors: dict[str, tuple[str, ...]], directions: Iterable[str]) -> None:
        """Creates at zero the series a dashboard reads before their first event. `detectors`: detector
        name -> the scenario labels it reports under; the other arguments are the label values."""
        for s in scenarios:
            self.recommendations.labels(s)
            self.trials.labels(s)
            self.events.labels(s, "invalid", "dead_letter")
            for a in ACTIONS:
                for o in outcomes:
                    self.events.labels(s, a, o)
            for r in recommenders:
                self.hits.labels(s, r)
        for reason in reasons:
            self.dead_letters.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for op in MILVUS_OPERATIONS:
            self.milvus_seconds.labels(op)
            self.milvus_errors.labels(op)
        for reason in REFETCH_REASONS:
            self.refetches.labels(reason)
        for outcome in ROLLOUT_OUTCOMES:
            self.rollouts.labels(outcome)
        self.rollout_progress.set(1)
        for kind in ROW_KINDS:
            self.vectors_pending.labels(kind)
            self.vectors_dropped.labels(kind)
            self.vectors_refused.labels(kind)
        for detector, labels in detectors.items():
            for s in labels:
                for d in directions:
                    self.drift.labels(detector, s, d)

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Times one pipeline stage of a micro-batch."""
        return _timed(self.stage_seconds, name)

    @contextmanager
    def milvus_call(self, operation: str) -> Iterator[None]:
        """Times a Milvus call and counts it as an error if it raises (the exception still propagates)."""
        with _timed(self.milvus_seconds, operation):
            try:
                yield
            except Exception:
                self.milvus_errors.labels(operation).inc()
                raise

    def exposition(self) -> tuple[bytes, str]:
        """The text format every Prometheus 2.x and 3.x scrapes (0.0.4), with its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
