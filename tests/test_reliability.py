"""Reliability against real processes, on each stack: kill -9 mid-replay, two workers sharing a group,
bad input interleaved with good, late events, a vector-store outage, a flood. Each run starts on a
fresh broker (its own Tansu, or the shared Kafka cluster wiped), so offsets (and with them the
state's watermarks) are the same in the reference run and in a run that crashes, on either stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from models.data.contract import DEAD_LETTER_KEY_BYTES, DEAD_LETTER_VALUE_BYTES, Event
from streams.kafka.replay import event_json, event_messages, publish
from streams.kafka.topics import DEAD_LETTERS, events_topic
from streams.testing.supervise import WorkerProcess
from streams.worker.routing import HOP_HEADER
from tests.replays import (
    ML100K,
    N_REFERENCE,
    embedded_defaults,
    iu,
    ml100k,
    replay,
    wait_applied,
    worker_env,
)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_kill_9_mid_replay_loses_nothing_and_applies_nothing_twice(tiny_model, reference, stack, tmp_path, store,
                                                                   request):
    """On the production stack with the memory store (all state from the changelog) the broker
    restarts too while the worker is down (every Kafka node stopped, then started on its data):
    Kafka keeps the events, the changelog and the offsets."""
    events = ml100k(N_REFERENCE)
    bootstrap = stack.bootstrap
    env = replay(stack, tiny_model, tmp_path, "crash", events, IU_STORE=store)
    first = WorkerProcess(env, tmp_path / "crash.log").start()
    try:
        first.wait_for(lambda s: s.get("events_in", 0) >= N_REFERENCE // 2, 180, "half the replay consumed")
    finally:
        first.kill()
    generations = [line for line in (tmp_path / "crash.log").read_text().splitlines() if "generation id" in line]
    print("the first worker's group generations:", generations)
    if stack.production and store == "memory://":
        cluster = request.getfixturevalue("kafka_cluster")
        cluster.stop()
        cluster.start()
    with WorkerProcess(env, tmp_path / "restart.log") as again:
        after = wait_applied(again, events, 300, bootstrap)
        redelivered = again.get("/stats").get("redelivered", 0)
    same = ("users", "events_applied", "interactions")
    assert {k: after[k] for k in same} == {k: reference[k] for k in same}, (after, reference)
    assert after["events_applied"] == N_REFERENCE
    print(f"{store}: state equal to the uninterrupted run; {redelivered} redelivered events skipped")


def bad_records(rng: random.Random, n: int, users: list[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs that must all be dead-lettered: every way a producer gets it wrong."""
    def good(uid: str) -> dict:
        return {"event_id": f"bad-{rng.random()}", "user_id": uid, "item_id": "1", "action": "click",
                "scenario": "home", "ts": 880_000_000_000}

    def without(e: dict, field: str) -> dict:
        return {k: v for k, v in e.items() if k != field}

    def wrong_value() -> object:
        return rng.choice([None, True, 1.5, [], {}, ["x"], {"a": 1}])

    makers = [
        lambda e: rng.randbytes(rng.randint(0, 300)),
        lambda e: json.dumps({**e, rng.choice(["event_id", "user_id", "item_id", "action", "scenario", "ts"]):
                              wrong_value()}).encode(),
        lambda e: json.dumps(without(e, rng.choice(sorted(e)))).encode(),
        lambda e: json.dumps({**e, "item_id": "x" * rng.randint(300, 200_000)}).encode(),
        lambda e: b"[" * rng.randint(1_000, 100_000),
        lambda e: json.dumps({**e, "item_id": "\u202e\x00\u00fc"}).encode(),
        lambda e: json.dumps({**e, "item_id": "\u96fb\u5f71"}).encode(),  # printable, but no such item
        lambda e: json.dumps({**e, "ts": "NaN"}).encode().replace(b'"NaN"', b"NaN"),
        lambda e: json.dumps({**e, "ts": rng.choice([-1, -(2**62), 4_000_000_000_000, 2**70])}).encode(),
        lambda e: json.dumps({**e, "scenario": rng.choice(["mars", "", "HOME"])}).encode(),
        lambda e: json.dumps({**e, "action": rng.choice(["teleport", "Click", "\u00e9"])}).encode(),
        lambda e: json.dumps(rng.choice([[e], "event", 42, None])).encode(),
    ]
    out = []
    for _ in range(n):
        uid = rng.choice(users)
        out.append((uid.encode(), rng.choice(makers)(good(uid))))
    return out


def test_bad_input_is_dead_lettered_valid_and_late_input_applied(tiny_model, stack, tmp_path, consume_all):
    rng = random.Random(5)
    valid = ml100k(3000)
    users = sorted({e.user_id for e in valid})
    # Late events: a user's events arriving newest first. The rule (README, Guarantees): applied and
    # counted as late; the interaction buffer keeps event-time order.
    late_user = [Event(f"late-{k}", "late-user", str(k + 1), "click", "home", 890_000_000_000 - k * 60_000)
                 for k in range(5)]
    messages = [(events_topic(e.scenario), e.user_id.encode(),
                 json.dumps({**json.loads(event_json(e)), "extra": "\u00fcnicode \U0001f3ac", "context": {"p": 1}}
                            if k % 7 == 0 else json.loads(event_json(e))).encode())
                for k, e in enumerate(valid)]
    bad = bad_records(rng, 3000, users)
    # near the produce limits: a dead letter of either as it came would not fit in one request
    bad += [(b"u1", b'{"junk": "' + b"x" * 990_000 + b'"}'), (b"k" * 200_000, b"{}")]
    for key, value in bad:  # interleaved; valid events keep their order
        messages.insert(rng.randrange(len(messages) + 1), (events_topic(rng.choice(("home", "search", "video"))),
                                                           key, value))
    messages += list(event_messages(late_user))
    env = replay(stack, tiny_model, tmp_path, "bad", [])
    prod = stack.producer()
    with WorkerProcess(env, tmp_path / "bad.log") as worker:
        publish(prod, messages, progress=False)
        total = len(messages)
        stats = worker.wait_for(lambda s: s.get("events_in", 0) >= total, 240, f"{total} records consumed")
        assert worker.proc is not None and worker.proc.poll() is None
        dead = {k.removeprefix("dead_letter:"): v for k, v in stats.items() if k.startswith("dead_letter:")}
        assert sum(dead.values()) == len(bad), json.dumps(stats)
        assert stats.get("applied", 0) + stats.get("late", 0) == len(valid) + len(late_user)
        assert stats.get("late", 0) >= len(late_user) - 1  # the first one is not late
        assert worker.get("/state/digest")["events_applied"] == len(valid) + len(late_user)
        got = worker.get("/users/late-user/interest")
        assert got["events_applied"] == 5
        assert [r["ts"] for r in got["recent_items"]] == sorted((e.ts for e in late_user), reverse=True)
        assert worker.metric("iu_dead_letters_total") == len(bad)
    dlq = consume_all(stack.bootstrap, DEAD_LETTERS, lambda ms: len(ms) >= len(bad), timeout=120)
    assert len(dlq) == len(bad)
    assert Counter(dict(m.headers())["iu.reason"].decode() for m in dlq) == Counter(dead)
    assert Counter(m.value() for m in dlq) == Counter(v[:DEAD_LETTER_VALUE_BYTES] for _, v in bad)
    cut = sorted((h["iu.original_value_size"], h["iu.original_value_sha256"]) for m in dlq
                 if "iu.original_value_size" in (h := {k: v.decode() for k, v in m.headers()}))
    assert cut == sorted((str(len(v)), hashlib.sha256(v).hexdigest()) for _, v in bad
                         if len(v) > DEAD_LETTER_VALUE_BYTES)
    [long_key] = [m for m in dlq if "iu.original_key_size" in dict(m.headers())]
    assert len(long_key.key()) == DEAD_LETTER_KEY_BYTES
    assert dict(long_key.headers())["iu.original_key_size"] == b"200000"
    print("dead letters by reason:", dict(sorted(dead.items())))


def test_workers_share_the_partitions_and_the_others_take_over(tiny_model, stack, shared_milvus, tmp_path):
    """As docker-compose runs them: all bound to every interface, each advertising its own address
    (here loopback addresses), each answering for the others' users through it. Two workers on the
    embedded stack, three on the production one; the last is killed -9 half way."""
    events = ml100k(6000)
    halves = events[:3000], events[3000:]
    expected = [Counter(e.user_id for e in events[:n]) for n in (3000, 6000)]
    # Three need 6 partitions: Faust's sticky assignor leaves a third worker nothing of 4 that the
    # first two hold at 2 each (its most per worker).
    n, partitions = (3, "6") if stack.production else (2, "4")
    # the workers share one vector store: a Milvus server on either stack
    web = [{"IU_MILVUS_URI": shared_milvus.uri, "IU_WEB_HOST": "0.0.0.0", "IU_WEB_ADVERTISED_HOST": f"127.0.0.{k + 2}",
            "IU_PARTITIONS": partitions} for k in range(n)]
    envs = [replay(stack, tiny_model, tmp_path, "w0", [], **web[0])]
    envs += [worker_env(stack, tiny_model, tmp_path, f"w{k}", **web[k]) for k in range(1, n)]
    workers: list[WorkerProcess] = []
    try:
        for k, env in enumerate(envs):  # one at a time, so that `finally` stops those that did start
            workers.append(WorkerProcess(env, tmp_path / f"w{k}.log").start())
        deadline = time.monotonic() + 90
        while True:  # event partitions split among them (changelogs overlap: standby replicas)
            split = [{tp for tp in w.get("/health").get("assigned", []) if tp.startswith("iu.events.")}
                     for w in workers]
            if all(split) and sum(map(len, split)) == len(set().union(*split)):
                break
            assert time.monotonic() < deadline, f"no partition split: {split}"
            time.sleep(0.5)
        publish(stack.producer(), event_messages(halves[0]), progress=False)
        deadline = time.monotonic() + 180
        while (served := [w.get("/stats").get("events_in", 0) for w in workers]) and sum(served) < 3000:
            assert time.monotonic() < deadline, served
            time.sleep(0.5)
        assert all(served), f"a worker served nothing: {served}"
        for uid, count in expected[0].items():  # any worker answers for any user: the owner's state
            got = [w.get(f"/users/{uid}/interest") for w in workers]
            assert all(g == got[0] for g in got) and got[0]["events_applied"] == count, (uid, got)
        for uid in list(expected[0])[:20]:  # a request already forwarded once is not forwarded again
            hop = [w.get(f"/users/{uid}/interest", headers={HOP_HEADER: "http://elsewhere:1"}) for w in workers]
            assert sorted(h.get("http_status", 200) for h in hop) == [200] + [503] * (n - 1), (uid, hop)
            assert all(h["retry_after"] == "1" for h in hop if "http_status" in h)
        workers.pop().kill()
        publish(stack.producer(), event_messages(halves[1]), progress=False)
        deadline = time.monotonic() + 300
        while short := {uid: got for uid, count in expected[1].items()
                        if (got := workers[0].get(f"/users/{uid}/interest").get("events_applied")) != count}:
            assert time.monotonic() < deadline, f"users short after the takeover (applied): {short}"
            time.sleep(1)
        time.sleep(3)  # anything applied twice would show now
        for uid, count in expected[1].items():
            assert all(w.get(f"/users/{uid}/interest")["events_applied"] == count for w in workers), uid
    finally:
        for w in workers:
            w.stop()
    print(f"events served before the kill, per worker: {served}")


def test_embedded_worker_killed_then_interrupted_mid_replay_ends_exact(tiny_model, reference, tmp_path):
    """With `iu` commands only, on embedded defaults: `iu worker` (which starts the local embedded
    broker) and `iu replay` paced; the worker killed -9 a quarter in, run again, stopped with Ctrl-C
    half way, run again. The broker and the replay outlive the workers, and the state ends equal to
    the uninterrupted run."""
    env = embedded_defaults(tiny_model, tmp_path, IU_DATA_DIR=str(ML100K.parent.resolve()))
    events = ml100k(N_REFERENCE)
    worker = WorkerProcess(env, tmp_path / "first.log").start()
    publisher = subprocess.Popen([sys.executable, "-m", "streams.cli", "replay", "--limit", str(N_REFERENCE),
                                  "--rate", "500"], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        try:
            worker.wait_for(lambda s: s.get("events_in", 0) >= N_REFERENCE // 4, 120, "a quarter consumed")
        finally:
            worker.kill()
        worker = WorkerProcess(env, tmp_path / "second.log").start()
        try:
            worker.wait_for(lambda s: s.get("events_in", 0) >= N_REFERENCE // 4, 120, "another quarter consumed")
        finally:
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGINT)
            assert worker.proc.wait(60) == 0, worker.tail()
            worker.stop()
        with WorkerProcess(env, tmp_path / "third.log") as worker:
            _, err = publisher.communicate(timeout=120)
            assert publisher.returncode == 0, err[-2000:]
            after = wait_applied(worker, events, 300)
        assert "running at" in (tmp_path / "third.log").read_text()  # the same broker, found again
    finally:
        if publisher.poll() is None:
            publisher.kill()
        iu("broker", "stop", "--force", env=env)
    same = ("users", "events_applied", "interactions")
    assert {k: after[k] for k in same} == {k: reference[k] for k in same}, (after, reference)


def test_rocksdb_tables_built_on_another_broker_are_refused_with_what_to_do(tiny_model, tmp_path):
    """A worker's RocksDB tables from an embedded broker that has since stopped meet a new one (its
    offsets start again at 0): the worker refuses them in one line rather than stand past the ends."""
    env = embedded_defaults(tiny_model, tmp_path, IU_STORE="rocksdb://")
    try:
        with WorkerProcess(env, tmp_path / "first.log"):
            pass  # ready: its tables exist
        assert iu("broker", "stop", env=env).returncode == 0
        refused = iu("worker", env=env, timeout=180)
    finally:
        iu("broker", "stop", "--force", env=env)
    assert refused.returncode == 1, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "built on another broker" in lines[0] and "delete" in lines[0], lines
