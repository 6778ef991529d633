"""Replaying ml-100k events into workers on either stack, and telling what a run that falls short
lost: where the missing events sit, what the changelog holds, where the worker stands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from pymilvus import MilvusClient

from models.data.contract import Event, read_events, read_items
from streams.core.state import events_applied
from streams.kafka.admin import end_offsets_read, prepare_topics
from streams.kafka.broker import free_port
from streams.kafka.replay import event_messages, publish, publish_catalog
from streams.kafka.topics import changelog_topic, events_topic
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess
from tests.stacks import Stack

ML100K = Path("var/data/ml-100k")
N_REFERENCE = 10_000  # events in the reference run that the crash and fault tests compare with


def ml100k(n: int) -> list[Event]:
    return sorted(read_events(ML100K / "events.csv"), key=lambda e: e.ts)[:n]


def worker_env(stack: Stack, model: Path, tmp: Path, name: str, **extra: str) -> dict[str, str]:
    """A worker's settings on `stack`; on the embedded one each worker has a milvus-lite file of its own
    (one process per file), on the production one they share the Milvus server."""
    lite = {} if stack.production else {"IU_MILVUS_URI": str(tmp / f"{name}-milvus.db")}
    return {**stack.env, **lite, "IU_MODEL": str(model), "IU_WEB_PORT": str(free_port()), "IU_DEVICE": "cpu",
            "IU_STATE_DIR": str(tmp / f"{name}-faust"), **extra}


def keyed_records(bootstrap: str, topics: list[str], users: set[str],
                  timeout: float = 30.0) -> dict[str, list[tuple[str, int, int, bytes]]]:
    """Every record of `topics` keyed by one of `users`, as (topic, partition, offset, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"diag-{time.time_ns()}", "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p, 0) for t in topics for p in c.list_topics(t, timeout=10).topics[t].partitions]
        # the ends a fetch reports: Tansu's ListOffsets answers short of a multi-record last batch
        ends = end_offsets_read(bootstrap, {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1]
                                            for tp in tps})
        c.assign(tps)
        found: dict[str, list[tuple[str, int, int, bytes]]] = {}
        seen = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout
        while any(seen[k] < ends[k] for k in ends) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            seen[(msg.topic(), msg.partition())] = msg.offset() + 1
            if (uid := msg.key().decode()) in users:
                found.setdefault(uid, []).append((msg.topic(), msg.partition(), msg.offset(), msg.value()))
        return found
    finally:
        c.close()


def changelog_history(bootstrap: str, users: set[str]) -> dict[str, list[tuple[int, int, int]]]:
    """Every state record of `users` in the changelog as (partition, offset, events applied). A short
    run then tells its cause: a count that drops between records is a worker that lost state while
    running; a record ahead of the worker is recovery stopping short; records that end where the worker
    stands mean the events were never consumed (then the next offsets per partition show which)."""
    topic = changelog_topic(Settings())
    return {uid: [(p, o, events_applied(v)) for _, p, o, v in recs]
            for uid, recs in keyed_records(bootstrap, [topic], users).items()}


def missing_events(bootstrap: str, worker: WorkerProcess, events: list[Event],
                   users: set[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Where the events of short `users` that are not in their state's ring sit, as (topic,
    partition, offset): next to the worker's log (refetches, rebalances), whether a lost record was
    the first of an assignment, or in the middle of a run, says which path lost it."""
    wanted = {}
    for uid in users:
        ring = worker.get(f"/users/{uid}/interest").get("recent_items", [])
        oldest = min((r["ts"] for r in ring), default=0)  # the ring holds the last L: older ones fell out
        wanted.update({(e.user_id, e.item_id, e.ts): e.event_id for e in events if e.user_id == uid and e.ts > oldest})
        for r in ring:
            wanted.pop((uid, r["item_id"], r["ts"]), None)
    ids = set(wanted.values())
    topics = sorted({events_topic(e.scenario) for e in events})
    return {uid: [(t, p, o) for t, p, o, v in recs if json.loads(v)["event_id"] in ids]
            for uid, recs in keyed_records(bootstrap, topics, users).items()}


def wait_applied(worker: WorkerProcess, events: list[Event], timeout: float, bootstrap: str | None = None) -> dict:
    """Poll the state digest until all `events` are applied; then once more after a pause, so an event
    applied twice (the count going past) would show. On timeout, which users are short and by how much,
    where the worker stands in each partition, and (given the broker) the short users' changelog records."""
    n = len(events)
    deadline = time.monotonic() + timeout
    digest: dict = {}
    while time.monotonic() < deadline:
        digest = worker.get("/state/digest")
        if digest.get("events_applied", 0) >= n:
            time.sleep(3)
            return worker.get("/state/digest")
        time.sleep(0.5)
    short = {}
    for uid, want in sorted(Counter(e.user_id for e in events).items()):
        got = worker.get(f"/users/{uid}/interest").get("events_applied", 0)
        if got != want:
            short[uid] = (got, want)
    history = changelog_history(bootstrap, set(short)) if bootstrap and short else {}
    missing = missing_events(bootstrap, worker, events, set(short)) if bootstrap and short else {}
    positions = worker.get("/stats").get("next_offsets")
    log = worker.log_path.read_text(errors="replace").splitlines() if worker.log_path.exists() else []
    notable = [line[:300] for line in log if any(w in line for w in ("fetching", "Seek", "Worker ready", "ERROR"))]
    # Compact findings first and the worker's log last: CI shows a long message's head and tail only.
    raise AssertionError(f"{n} events not applied within {timeout:.0f} s: {digest}\nusers short (applied, "
                         f"expected): {short}\nnext offset per event partition: {positions}\n"
                         f"events missing from their ring (topic, partition, offset): {str(missing)[:800]}\n"
                         f"changelog (partition, offset, applied): {history}\nlog, refetches and rebalances:\n"
                         + "\n".join(notable[-40:]) + f"\n{worker.tail()}")


def replay(stack: Stack, model: Path, tmp: Path, name: str, events: list[Event], **extra: str) -> dict[str, str]:
    """The topics created, the catalog and `events` published (possibly none yet); the worker env."""
    env = worker_env(stack, model, tmp, name, **extra)
    prepare_topics(Settings.from_env(env), stack.bootstrap)  # before Tansu auto-creates them wrong
    prod = stack.producer()
    publish_catalog(prod, read_items(ML100K / "items.csv"))
    publish(prod, event_messages(events), progress=False)
    return env


def iu(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """An `iu` command as a user runs it, `env` on top of this process's environment."""
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def embedded_defaults(model: Path, tmp: Path, **extra: str) -> dict[str, str]:
    """A worker on embedded defaults, as `iu worker` runs without IU_KAFKA_BOOTSTRAP: on the local
    embedded broker (here recorded under `tmp`, on a free port), milvus-lite, its own state folder."""
    return {"IU_BROKER_DIR": str(tmp / "broker"), "IU_BROKER_PORT": str(free_port()), "IU_KAFKA_BOOTSTRAP": "",
            "IU_MODEL": str(model), "IU_MILVUS_URI": str(tmp / "milvus.db"), "IU_WEB_PORT": str(free_port()),
            "IU_DEVICE": "cpu", "IU_STATE_DIR": str(tmp / "faust"), **extra}


def vector_gaps(worker: WorkerProcess, milvus_uri: str, scenarios: dict[str, set[str]],
                since_ms: int = 0) -> dict[str, float]:
    """Per user, how close their vectors in Milvus (rows of their `scenarios` written at `since_ms`
    or later) come to the one their state gives now: the largest coordinate difference, least over
    those rows (the row their last micro-batch wrote is the latest); inf where there is none."""
    client = MilvusClient(milvus_uri)
    client.load_collection("user_interests")
    keys = [f"{uid}|{sc}" for uid, scs in scenarios.items() for sc in scs]
    found = client.get("user_interests", ids=keys, output_fields=["vector", "updated_at"], consistency_level="Strong")
    rows = {r["key"]: r["vector"] for r in found if r["updated_at"] >= since_ms}
    gaps = dict.fromkeys(scenarios, float("inf"))
    for uid, scs in scenarios.items():
        for sc in (sc for sc in scs if f"{uid}|{sc}" in rows):
            fused = worker.get(f"/users/{uid}/interest?scenario={sc}")["fused"]
            gaps[uid] = min(gaps[uid], max(abs(a - b) for a, b in zip(rows[f"{uid}|{sc}"], fused, strict=True)))
    return gaps
