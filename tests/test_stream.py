"""The streaming pipeline on each stack (Tansu + milvus-lite; Apache Kafka + a Milvus server) with a
real (tiny) model.

One worker process consumes a slice of ml-100k plus one bad record per dead-letter reason and a
duplicated event; the checks read its state over HTTP, and the topics with plain confluent-kafka.
Then the worker is stopped and a new process must recover exactly the same state from the changelog,
and expect each partition's next record where the first one stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Producer

from models.data.contract import MAX_TITLE_BYTES, Event, Item, Recommendation, read_events, read_items
from streams.core.state import event_hash
from streams.kafka.broker import free_port
from streams.kafka.replay import event_messages, producer, publish, publish_catalog
from streams.kafka.topics import DEAD_LETTERS, RECOMMENDATIONS, events_topic, partition_of
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess
from tests.replays import keyed_records, ml100k, replay, wait_applied

ML100K = Path("var/data/ml-100k")
N_EVENTS = 3000
GOOD = {"event_id": "bad-0", "user_id": "1", "item_id": "ml-100k-i1", "action": "click", "scenario": "home",
        "ts": 880_000_000_000}
BAD = [  # (key, value, reason)
    (b"1", b"{not json", "malformed_json"),
    (b"1", b"[1, 2]", "not_an_object"),
    (b"1", json.dumps({"user_id": "1"}).encode(), "missing_field"),
    (b"1", json.dumps({**GOOD, "ts": "yesterday"}).encode(), "wrong_type"),
    (b"1", json.dumps({**GOOD, "ts": -5}).encode(), "bad_timestamp"),
    (b"1", json.dumps({**GOOD, "action": "teleport"}).encode(), "unknown_action"),
    (b"1", json.dumps({**GOOD, "scenario": "moon"}).encode(), "unknown_scenario"),
    (b"1", json.dumps({**GOOD, "item_id": "no-such-item"}).encode(), "unknown_item"),
    (b"someone-else", json.dumps(GOOD).encode(), "key_mismatch"),
]


def test_events_state_recommendations_dead_letters_and_restart(tiny_model, stack, tmp_path, consume_all):
    max_len = json.loads((tiny_model / "config.json").read_text())["max_len"]
    bootstrap = stack.bootstrap
    env = {**stack.env, "IU_MODEL": str(tiny_model), "IU_WEB_PORT": str(free_port()), "IU_DEVICE": "cpu",
           "IU_STATE_DIR": str(tmp_path / "faust")}
    events = sorted(read_events(ML100K / "events.csv"), key=lambda e: e.ts)[:N_EVENTS]
    dup = events[N_EVENTS // 2]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        prod = producer(bootstrap)
        publish_catalog(prod, read_items(ML100K / "items.csv"))
        publish(prod, event_messages(events), progress=False)
        raw = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        for key, value, _ in BAD:
            raw.produce(events_topic("home"), key=key, value=value)
        raw.flush(10)
        publish(prod, event_messages([dup]), progress=False)
        total = N_EVENTS + len(BAD) + 1
        stats = worker.wait_for(lambda s: s.get("events_in", 0) >= total, 180, f"{total} events consumed")
        assert stats["events_in"] == total
        assert stats.get("applied", 0) + stats.get("late", 0) == N_EVENTS
        assert stats.get("duplicate", 0) == 1

        # Every valid event is in its user's state: counts and the last L interactions, in (ts, id) order.
        per_user = defaultdict(list)
        for e in events:
            per_user[e.user_id].append(e)
        skipped = 0
        for uid, evs in per_user.items():
            got = worker.get(f"/users/{uid}/interest")
            assert got["events_applied"] == len(evs), uid
            assert got["events_skipped"] >= (1 if uid == dup.user_id else 0)
            skipped += got["events_skipped"]
            last = sorted(evs, key=lambda e: (e.ts, event_hash(e.event_id)))[-max_len:]
            assert [r["item_id"] for r in got["recent_items"]] == [e.item_id for e in reversed(last)]
            assert abs(sum(v["weight"] for v in got["views"].values()) - 1) < 1e-3
        # Every skip is the duplicate or a record offered again (a partition fetched again, see
        # streams/kafka/continuity.py: at least once), and each is applied once.
        assert skipped == stats["duplicate"] + stats.get("redelivered", 0), stats

        # Every user with events gets recommendations; a plain consumer can parse them. The latest one
        # per user (a key's messages keep their order) excludes what the user interacted with.
        recs = consume_all(bootstrap, RECOMMENDATIONS, lambda ms: len(ms) >= stats["recommendations_out"])
        assert len(recs) == stats["recommendations_out"]
        by_user = {m.key().decode(): Recommendation.from_json(m.value()) for m in recs}
        assert set(by_user) == set(per_user)
        for uid, rec in by_user.items():
            assert rec.user_id == uid and len(rec.items) == 10
            assert not set(rec.item_ids) & {r["item_id"] for r in
                                                               worker.get(f"/users/{uid}/interest")["recent_items"]}
            assert rec.emitted_ts >= rec.ingest_ts and rec.model_version.startswith("tiny-")

        # Every bad record is dead-lettered with its own reason and its original bytes.
        dlq = consume_all(bootstrap, DEAD_LETTERS, lambda ms: len(ms) >= len(BAD))
        got = {(m.value(), dict(m.headers())["iu.reason"].decode()) for m in dlq}
        assert got == {(value, reason) for _, value, reason in BAD}
        assert all(dict(m.headers())["iu.topic"] == events_topic("home").encode() for m in dlq)

        before = worker.get("/state/digest")
        assert before["users"] == len(per_user)
        positions = worker.get("/stats")["next_offsets"]
    finally:
        assert worker.stop() == 0, worker.tail()

    # A new process recovers every user's state from the changelog, byte for byte.
    with WorkerProcess(env, tmp_path / "worker2.log") as again:
        assert again.get("/state/digest") == before
        assert again.get("/stats").get("events_in", 0) == 0  # offsets were committed: nothing redelivered
        # Its continuity check expects each partition from where the seek put it, before any record arrives.
        again.wait_for(lambda s: s.get("next_offsets") == positions, 30, f"next offsets {positions}")
        assert again.get(f"/users/{dup.user_id}/recommendations")["items"]
        assert again.get("/users/nobody/interest")["http_status"] == 404
        assert again.get(f"/users/{dup.user_id}/recommendations?scenario=moon")["http_status"] == 400


def test_demo_runs_end_to_end_on_embedded_defaults(tiny_model, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IU_")}
    env.update({"IU_MODEL": str(tiny_model), "IU_MILVUS_URI": str(tmp_path / "milvus.db"), "IU_DEVICE": "cpu",
                "IU_WEB_PORT": str(free_port())})
    r = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--events", "2000", "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["events_in"] == summary["applied"] == 2000
    assert summary["dlq"] == 0 and summary["recommendations_out"] > 0 and summary["users"] > 0
    assert 0 <= summary["latency_ms_p50"] <= summary["latency_ms_p99"]
    assert summary["online_trials"] > 0
    assert 0 <= summary["online_hit_rate@10_popularity"] <= 1 and 0 <= summary["online_hit_rate@10_ours"] <= 1
    assert isinstance(summary["drift_detections"], dict)


TRICKY_IDS = ['say "hi"', "it's", "back\\slash", "\\", '\\"', "電影 ü", "x\"' or 1==1 or '", "🎬 film"]


def test_item_ids_with_quotes_backslashes_and_non_ascii_round_trip(tiny_model, stack, tmp_path):
    """Catalog records, then (in a worker that never saw them: their offsets were committed) events
    naming those items: the worker finds them in Milvus by id, whatever characters the ids hold.
    Limits are in UTF-8 bytes, as Milvus counts them: a title of 1,000 CJK characters (3,000 bytes)
    is clipped and applied; an item id or a user id of 90 (270 bytes) is dead-lettered."""
    env = {**stack.env, "IU_MODEL": str(tiny_model), "IU_WEB_PORT": str(free_port()), "IU_DEVICE": "cpu",
           "IU_STATE_DIR": str(tmp_path / "faust")}
    titles = {i: f"a film called {i}" for i in TRICKY_IDS} | {"長編": "長" * 1000}
    too_long = "電" * 90
    items = [Item(i, t, ("Drama",)) for i, t in titles.items()] + [Item(too_long, "t", ())]
    events = [Event(f"tricky-{k}", "tricky-user", i, "click", "home", 880_000_000_000 + k * 1000)
              for k, i in enumerate(titles)] + [Event("long-user", too_long, "長編", "click", "home", 880_000_000_000)]
    with WorkerProcess(env, tmp_path / "catalog.log") as first:
        publish_catalog(stack.producer(), items)
        stats = first.wait_for(lambda s: s.get("items_in", 0) >= len(items), 60, "catalog records consumed")
        assert (stats["items_applied"], stats["titles_clipped"]) == (len(titles), 1), stats
        assert first.metric("iu_dead_letters_total") == 1 and first.metric("iu_catalog_titles_clipped_total") == 1
    with WorkerProcess(env, tmp_path / "events.log") as worker:
        publish(stack.producer(), event_messages(events), progress=False)
        stats = worker.wait_for(lambda s: s.get("events_in", 0) >= len(events), 60, "events consumed")
        dead = {k: n for k, n in stats.items() if k.startswith("dead_letter")}
        assert stats.get("applied") == len(titles) and dead == {"dead_letter:bad_value": 1}, stats
        for faust_own in ("/router/", "/table/user_state/", "/graph/", "/assignment/"):  # the documented API only
            assert worker.get(faust_own).get("http_status") == 404, faust_own
        got = worker.get("/users/tricky-user/interest")
        assert [(r["item_id"], r["title"]) for r in got["recent_items"]] == [
            (i, t if i != "長編" else "長" * (MAX_TITLE_BYTES // 3)) for i, t in reversed(titles.items())]


def test_events_on_another_partition_than_their_users_go_to_the_users_one(tiny_model, stack, tmp_path):
    """A producer on confluent-kafka's default partitioner (CRC32, not murmur2) puts a user's events
    on partitions where the user's state is not kept. Each such event is produced again to its key's
    murmur2 partition, counted, and applied there once; a user's events all end in one state."""
    events = ml100k(800)
    env = replay(stack, tiny_model, tmp_path, "misrouted", [])
    settings = Settings.from_env(env)
    partitions = settings.partitions
    landed: dict[str, int] = {}  # event id -> the partition the producer's partitioner chose
    raw = Producer({"bootstrap.servers": stack.bootstrap, "acks": "all"})  # the default partitioner
    with WorkerProcess(env, tmp_path / "misrouted.log") as worker:
        for topic, key, value in event_messages(events):
            raw.produce(topic, key=key, value=value, on_delivery=lambda err, msg: landed.update(
                {json.loads(msg.value())["event_id"]: msg.partition()}))
        assert raw.flush(30) == 0
        right = {e.event_id: partition_of(e.user_id.encode(), partitions) for e in events}
        wrong = {eid: p for eid, p in landed.items() if p != right[eid]}
        assert len(wrong) > len(events) // 4, "the default partitioner should misplace many users"
        after = wait_applied(worker, events, 180, stack.bootstrap)
        stats = worker.get("/stats")
        assert after["events_applied"] == len(events) and stats.get("misrouted") == len(wrong), stats
        assert worker.metric("iu_events_misrouted_total") == len(wrong)
        for uid, count in Counter(e.user_id for e in events).items():
            assert worker.get(f"/users/{uid}/interest")["events_applied"] == count, uid
    found: dict[str, list[int]] = defaultdict(list)  # each misrouted event: where it landed, and its copy
    for recs in keyed_records(stack.bootstrap, [events_topic(s) for s in settings.scenarios],
                              {e.user_id for e in events if e.event_id in wrong}).values():
        for _, partition, _, value in recs:
            if (eid := json.loads(value)["event_id"]) in wrong:
                found[eid].append(partition)
    assert {eid: sorted(ps) for eid, ps in found.items()} == {eid: sorted([p, right[eid]]) for eid, p in wrong.items()}
