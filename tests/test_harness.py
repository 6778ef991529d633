"""The worker's batch path in process (streams/testing/harness.py): ml-100k events, a malformed record
and a misrouted event go through the real batch handler, processor (tiny model, milvus-lite) and
monitor with no broker; then the same records again, as a redelivery after a crash would bring them."""

from __future__ import annotations

import json
from collections import Counter

from prometheus_client import CollectorRegistry

from models.data.contract import REASON_HEADER, REROUTED_HEADER, Recommendation
from streams.core.batch import Record
from streams.kafka.replay import event_json, event_messages
from streams.kafka.topics import DEAD_LETTERS, RECOMMENDATIONS, events_topic, partition_of
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.testing.harness import BatchHarness
from streams.worker.runtime import load_processor
from tests.replays import ml100k

NOW_MS = 1_800_000_000_000


def test_records_go_through_the_batch_handler_without_a_broker(tiny_model, tmp_path):
    settings = Settings(model=str(tiny_model), milvus_uri=str(tmp_path / "milvus.db"), device="cpu")
    harness = BatchHarness(settings, load_processor(settings, WorkerMetrics(CollectorRegistry())))
    events = ml100k(400)
    offsets: Counter[tuple[str, int]] = Counter()

    def record(topic: str, key: bytes, value: bytes, partition: int) -> Record:
        offsets[topic, partition] += 1
        return Record(topic, partition, offsets[topic, partition] - 1, key, value, NOW_MS)

    def own(key: bytes) -> int:
        return partition_of(key, settings.partitions)

    records = [record(topic, key, value, own(key)) for topic, key, value in event_messages(events)]
    records.append(record(events_topic("home"), b"1", b"{not json", own(b"1")))
    stray = events[0]
    elsewhere = (own(stray.user_id.encode()) + 1) % settings.partitions
    stray_json = json.dumps({**json.loads(event_json(stray)), "event_id": "stray"}).encode()
    records.append(record(events_topic(stray.scenario), stray.user_id.encode(), stray_json, elsewhere))
    for start in range(0, len(records), 128):
        harness.events(records[start:start + 128])

    stats, io = harness.stats.counts, harness.io
    assert stats["events_in"] == len(records) and stats["misrouted"] == 1, stats
    assert stats["applied"] + stats["late"] == len(events), stats
    per_user = Counter(e.user_id for e in events)
    processor = harness.handler.processor
    assert {k.decode(): processor.load_state(v).applied for k, v in io.table.items()} == per_user
    lists = [Recommendation.from_json(p.value) for p in io.on(RECOMMENDATIONS)]
    assert len(lists) == stats["recommendations_out"] and {r.user_id for r in lists} == set(per_user)
    assert all(len(r.items) == settings.top_k and r.ingest_ts == NOW_MS for r in lists)
    [dead] = io.on(DEAD_LETTERS)
    assert (dead.value, dead.headers[REASON_HEADER]) == (b"{not json", b"malformed_json")
    [again] = [p for p in io.produced if p.headers.get(REROUTED_HEADER)]
    assert (again.value, again.partition) == (stray_json, own(stray.user_id.encode()))
    expected = {(tp.topic, tp.partition): n for tp, n in harness.continuity.expected.items()}
    assert expected == dict(offsets)
    assert harness.metrics.registry.get_sample_value("iu_dead_letters_total", {"reason": "malformed_json"}) == 1

    def interactions() -> dict[bytes, bytes]:
        return {k: processor.load_state(v).interactions_bytes() for k, v in io.table.items()}

    before, redelivered = interactions(), stats["redelivered"]
    for start in range(0, len(records), 128):  # offered again: passed to the state, which skips them
        harness.events(records[start:start + 128])
    assert interactions() == before  # only the skipped counter moved
    assert harness.stats.counts["redelivered"] - redelivered == len(events)
