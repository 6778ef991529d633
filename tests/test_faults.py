"""Broker and vector-store faults on the production stack (3 Kafka nodes, replication factor 3,
min.insync.replicas 2, a Milvus server) while a worker consumes a replay and a producer publishes it.

Each run ends with the kill -9 test's check (every user's interaction buffer, event count and
watermarks equal to the uninterrupted reference run) and counts the lists on iu.recommendations:
every list the worker emitted is there, and every user's last list, the one their final state
gives, is there (for a Milvus fault: every user with events after Milvus was back; the others'
last lists are withheld).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from models.data.contract import Event, Recommendation
from ops.kafka.cluster import KafkaCluster
from streams.kafka.replay import event_messages, publish
from streams.kafka.topics import RECOMMENDATIONS
from streams.testing.supervise import MilvusServer, WorkerProcess
from tests.replays import N_REFERENCE, keyed_records, ml100k, replay, vector_gaps, wait_applied
from tests.stacks import Stack

SAME = ("users", "events_applied", "interactions")  # interactions: buffers, counts and watermarks


@dataclass
class Scene:
    """What a fault acts on, and how far the producer has got (events handed to the client)."""

    cluster: KafkaCluster
    milvus: MilvusServer
    worker: WorkerProcess
    published: list[int]
    back_at: int = 0  # the producer's count once the faulty part was whole again; lists are due after it


def wait_consumed(scene: Scene, n: int) -> None:
    scene.worker.wait_for(lambda s: s.get("events_in", 0) >= n, 120, f"{n} events consumed")


def broker_down(scene: Scene, node_id: int, after: int, seconds: float) -> None:
    """kill -9 a node once `after` events are consumed; restarted on its data `seconds` later."""
    wait_consumed(scene, after)
    scene.cluster.kill(node_id)
    time.sleep(seconds)
    scene.cluster.restart(node_id)


def rolling_restart(scene: Scene) -> None:
    """Each node in turn: a controlled shutdown, a start on its data, the cluster whole again."""
    wait_consumed(scene, N_REFERENCE // 10)
    for node_id in scene.cluster.nodes:
        scene.cluster.restart(node_id)


def kill_milvus(scene: Scene) -> None:
    """kill -9 the Milvus server a quarter into the replay; started again on its data once the worker
    has withheld lists (its health degraded meanwhile); the vector store then up and nothing pending.
    The outage's finer points (backoff, pending vectors, metrics) are the outage test's, in
    tests/test_reliability.py."""
    wait_consumed(scene, N_REFERENCE // 4)
    scene.milvus.kill()
    scene.worker.wait_for(lambda s: s.get("withheld", 0) > 0, 60, "lists withheld")
    health = scene.worker.get("/health")  # still consuming, and saying why lists stopped
    assert health["status"] == "degraded" and not health["vector_store"]["up"], health
    assert scene.worker.metric("iu_vector_store_up") == 0
    scene.milvus.start()
    deadline = time.monotonic() + 120
    while (store := scene.worker.get("/health")["vector_store"]) and not (store["up"] and not store["pending_vectors"]):
        assert time.monotonic() < deadline, store
        time.sleep(0.5)
    scene.back_at = scene.published[0]


@dataclass(frozen=True)
class Fault:
    act: Callable[[Scene], None]
    publish_s: float  # the replay is paced over this long, so that the fault lands in its middle


FAULTS = {
    # node 1 (a controller voter too) a quarter into the replay, back 10 s later
    "kill-9-broker": Fault(functools.partial(broker_down, node_id=1, after=N_REFERENCE // 4, seconds=10), 20),
    "rolling-restart": Fault(rolling_restart, 45),
    # node 3 down for 60 s while the producer and the worker go on
    "broker-down-60s": Fault(functools.partial(broker_down, node_id=3, after=N_REFERENCE // 20, seconds=60), 75),
    "kill-9-milvus": Fault(kill_milvus, 60),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_mid_replay_loses_nothing_and_every_list_arrives(tiny_model, reference, kafka_stack: Stack,
                                                               kafka_cluster, milvus_server, tmp_path, fault):
    events = ml100k(N_REFERENCE)
    env = replay(kafka_stack, tiny_model, tmp_path, "fault", [])
    with WorkerProcess(env, tmp_path / "fault.log") as worker:
        scene = Scene(kafka_cluster, milvus_server, worker, [0])
        publisher = threading.Thread(target=paced, args=(kafka_stack, events, FAULTS[fault].publish_s,
                                                         scene.published), daemon=True)
        publisher.start()
        try:
            FAULTS[fault].act(scene)
        finally:
            publisher.join(FAULTS[fault].publish_s + 120)
        assert scene.published[0] == len(events), f"the producer stopped at {scene.published[0]}"
        after = wait_applied(worker, events, 300, kafka_stack.bootstrap)
        stats = worker.get("/stats")
        # A user's last list comes from the last of their events the worker consumed: the last one on
        # one of the scenario topics (topics interleave as they are fetched; each keeps its order).
        last = {(e.user_id, e.scenario): n for n, e in enumerate(events)}
        scenarios: dict[str, set[str]] = {}
        for uid, sc in last:
            scenarios.setdefault(uid, set()).add(sc)
        gaps = vector_gaps(worker, kafka_stack.milvus_uri, scenarios) if fault == "kill-9-milvus" else {}
    assert {k: after[k] for k in SAME} == {k: reference[k] for k in SAME}, (after, reference)
    lists = keyed_records(kafka_stack.bootstrap, [RECOMMENDATIONS], set(scenarios), timeout=60)
    triggers = {Recommendation.from_json(value).trigger_event_id for recs in lists.values() for *_, value in recs}
    sent = sum(len(recs) for recs in lists.values())
    assert len(triggers) == stats["recommendations_out"], (sent, len(triggers), stats)
    due = {uid: {events[last[uid, sc]].event_id for sc in scs} for uid, scs in scenarios.items()
           if max(last[uid, sc] for sc in scs) >= scene.back_at}
    missing = {uid: ids for uid, ids in due.items() if not ids & triggers}
    assert not missing, f"{len(missing)} of {len(due)} users have no list for their final state: {missing}"
    if fault == "kill-9-milvus":
        assert stats["withheld"] > 0, stats
        far = {uid: gap for uid, gap in gaps.items() if not gap < 1e-4}
        assert not far, f"users whose vector in Milvus is not their latest: {far}"
    print(f"{fault}: state equal to the uninterrupted run; {sent} lists on the topic "
          f"({sent - len(triggers)} sent twice), {stats['recommendations_out']} emitted, "
          f"{stats.get('withheld', 0)} withheld; {len(due)} users' last lists checked")


def paced(stack: Stack, events: list[Event], seconds: float, published: list[int]) -> None:
    """`events` spread over `seconds`, counting in `published[0]` as they go."""
    def counted() -> Iterator[tuple[str, bytes, bytes]]:
        for n, message in enumerate(event_messages(events), 1):
            yield message
            published[0] = n
    publish(stack.producer(), counted(), rate=len(events) / seconds, progress=False)

