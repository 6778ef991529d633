"""Every Prometheus metric the worker exports, in one place, so names and label sets stay consistent.

Conventions: units in names (`_seconds`, `_bytes`), `_total` counters, and only bounded labels
(scenario, action, reason, stage, operation, detector, partition): never a user or item id.
Labelled series that matter before their first event are created at zero (`initialise`), so a
dashboard shows 0 rather than "no data" and `rate()` has a starting point.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from models.data.contract import ACTIONS
from streams.drift import DIRECTIONS
from streams.quality import RECOMMENDERS
from streams.state import Outcome

disable_created_metrics()  # `_created` series double the exposition and no dashboard reads them

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("decode", "state", "encode", "upsert", "search", "rerank", "table", "monitor", "produce", "deliver")
MILVUS_OPERATIONS = ("upsert_users", "upsert_items", "search", "get_items", "load")
REFETCH_REASONS = ("gap", "stall")  # see streams/continuity.py
ROW_KINDS = ("user", "item")  # streams/guard.py

EVENTS = Counter("iu_events_consumed_total", "Events consumed, by scenario (topic), action and outcome; "
                 "outcome dead_letter has action 'invalid'", ["scenario", "action", "outcome"])
DEAD_LETTERS = Counter("iu_dead_letters_total", "Records sent to the dead-letter topic, by reason", ["reason"])
MISROUTED = Counter("iu_events_misrouted_total", "Events found on another partition than their key's murmur2 "
                    "partition (a producer on another partitioner), produced again to the right one", ["topic"])
TITLES_CLIPPED = Counter("iu_catalog_titles_clipped_total", "Catalog titles cut to their byte limit (applied, "
                         "not dead-lettered)")
RECOMMENDATIONS = Counter("iu_recommendations_emitted_total", "Recommendation lists emitted, by scenario",
                          ["scenario"])
END_TO_END = Histogram("iu_end_to_end_latency_seconds", "From the event's Kafka record timestamp (when the "
                       "producer sent it) to its recommendation being emitted", buckets=LATENCY_BUCKETS)
STAGE = Histogram("iu_stage_duration_seconds", "Time per micro-batch in each pipeline stage", ["stage"],
                  buckets=STAGE_BUCKETS)
BATCH = Histogram("iu_batch_size_events", "Events per micro-batch",
                  buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
MODEL = Info("iu_model", "The model the worker serves and the device its encoder runs on")
MILVUS_SECONDS = Histogram("iu_milvus_operation_duration_seconds", "Milvus calls, each a whole micro-batch",
                           ["operation"], buckets=STAGE_BUCKETS)
MILVUS_ERRORS = Counter("iu_milvus_errors_total", "Milvus calls that raised", ["operation"])
STORE_UP = Gauge("iu_vector_store_up", "1 while Milvus answers, 0 from a failed call until one succeeds")
VECTORS_PENDING = Gauge("iu_vectors_pending", "Rows waiting for Milvus to come back, by kind (user vectors, "
                        "catalog items)", ["kind"])
VECTORS_DROPPED = Counter("iu_vectors_dropped_total", "Pending rows evicted past the cap, by kind; a user's is "
                          "written again at the user's next event", ["kind"])
VECTORS_REFUSED = Counter("iu_vectors_refused_total", "Rows Milvus refused for their own content while it "
                          "answered (left out; not an outage), by kind", ["kind"])
WITHHELD = Counter("iu_recommendations_withheld_total", "Lists not emitted because Milvus was down (no stale "
                   "list is emitted instead)")
LAG = Gauge("iu_consumer_lag_messages", "Messages behind the partition's high watermark, per assigned event "
            "partition", ["topic", "partition"])
REFETCHES = Counter("iu_consumer_refetches_total", "Partitions fetched again from the next offset the agent "
                    "expected, because records past it arrived (gap) or fetched records never arrived (stall)",
                    ["reason"])
OFFSETS_SKIPPED = Counter("iu_offsets_skipped_total", "Offsets passed over because they hold no record (transaction "
                          "markers, records deleted or compacted away), never fetched again")
HTTP_REJECTED = Counter("iu_http_requests_rejected_total", "`/users/...` requests answered 503 because "
                        "IU_HTTP_QUEUE requests were already computing or waiting for the compute thread")
USERS = Gauge("iu_users_in_state", "Users whose state this worker holds (its assigned partitions)")
STATE_BYTES = Gauge("iu_state_bytes", "Bytes of user state this worker holds, all users together")
CATALOG = Gauge("iu_catalog_items", "Items the worker can recommend")
GC_PAUSE = Histogram("iu_gc_pause_seconds", "Garbage collections, by generation: each one stops the whole "
                     "worker, so a long one shows in the latency tail", ["generation"], buckets=STAGE_BUCKETS)
GC_FROZEN = Gauge("iu_gc_frozen_objects", "Start-up objects kept out of garbage collection (streams/heap.py)")
COMPUTE_THREADS = Gauge("iu_compute_threads", "CPU threads torch and BLAS use for the current micro-batch: one "
                        "fewer than on full ones (a backlog), leaving a core to the event loop (streams/threads.py)")
TRIALS = Counter("iu_online_trials_total", "Prequential trials: events whose user had recommendations for "
                 "that scenario when the event arrived", ["scenario"])
HITS = Counter("iu_online_hits_total", "Trials whose item was in the last top-K list, by recommender",
               ["scenario", "recommender"])
HIT_RATE = Gauge("iu_online_hit_rate", "Rolling prequential hit rate@K over the last trials (River)",
                 ["scenario", "recommender"])
DRIFT = Counter("iu_drift_detections_total", "Drift detections, by detector, scenario and direction",
                ["detector", "scenario", "direction"])


def initialise(scenarios: tuple[str, ...], reasons: tuple[str, ...], detectors: dict[str, tuple[str, ...]]) -> None:
    """`detectors`: detector name -> the scenario labels it reports under."""
    for s in scenarios:
        RECOMMENDATIONS.labels(s)
        TRIALS.labels(s)
        EVENTS.labels(s, "invalid", "dead_letter")
        for a in ACTIONS:
            for o in Outcome:
                EVENTS.labels(s, a, o.value)
        for r in RECOMMENDERS:
            HITS.labels(s, r)
    for reason in reasons:
        DEAD_LETTERS.labels(reason)
    for stage in STAGES:
        STAGE.labels(stage)
    for op in MILVUS_OPERATIONS:
        MILVUS_SECONDS.labels(op)
        MILVUS_ERRORS.labels(op)
    for reason in REFETCH_REASONS:
        REFETCHES.labels(reason)
    for kind in ROW_KINDS:
        VECTORS_PENDING.labels(kind)
        VECTORS_DROPPED.labels(kind)
        VECTORS_REFUSED.labels(kind)
    for detector, labels in detectors.items():
        for s in labels:
            for d in DIRECTIONS:
                DRIFT.labels(detector, s, d)


@contextmanager
def _timed(histogram: Histogram, label: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(label).observe(time.perf_counter() - start)


def stage(name: str) -> AbstractContextManager[None]:
    return _timed(STAGE, name)


@contextmanager
def milvus_call(operation: str) -> Iterator[None]:
    """Times a Milvus call and counts it as an error if it raises (the exception still propagates)."""
    with _timed(MILVUS_SECONDS, operation):
        try:
            yield
        except Exception:
            MILVUS_ERRORS.labels(operation).inc()
            raise


def exposition() -> tuple[bytes, str]:
    """The text format every Prometheus 2.x and 3.x scrapes (0.0.4), with its content type."""
    return generate_latest(), CONTENT_TYPE_PLAIN_0_0_4
