"""The model lifecycle on each stack: `iu model deploy` while a worker consumes, a restart that must
remember the catalog, and `iu model rollback`.

The worker serves v1 (the tiny model); v2 is the same architecture with other weights (another vector
space). v2 is deployed after a third of the events, while the next third is being published: the worker fills
v2's collections, switches between two micro-batches, and moves the aliases. Then every event has been
applied exactly once, every user has a v2 vector in the live collection equal to what the worker serves,
and no list made by v1 follows one made by v2 on any partition. Items published on iu.items are known
after a restart and have vectors in the live space; a rollback brings v1 back the same way. Last, v2
runs in shadow beside v1, is scored on the same events, and is promoted; then it is fine-tuned on the
event log (`iu train --resume --from-topics`), which learns the items published since.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
from milvus_lite.server_manager import server_manager_instance
from pymilvus import MilvusClient

from models.checkpoint import load_model, save_model
from models.data.contract import Event, Item, Recommendation, read_items
from streams.kafka.admin import prepare_topics
from streams.kafka.replay import event_messages, publish, publish_catalog
from streams.kafka.topics import RECOMMENDATIONS, partition_of
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess
from streams.vectors.store import collections
from tests.replays import ML100K, iu, ml100k, wait_applied, worker_env

N_EVENTS = 3000
COLD = [Item(f"new-{k}", f"A film published after training, number {k}", ("Drama",)) for k in range(5)]


@pytest.fixture(scope="module")
def tiny_v2(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every weight moved: another version, another embedding space."""
    model, meta = load_model(tiny_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("v2") / "tiny2"
    save_model(model, meta["item_ids"], out, out.name, {"dataset": meta["dataset"]})
    return out


def version(folder: Path) -> str:
    return json.loads((folder / "meta.json").read_text())["model_version"]


def served(worker: WorkerProcess) -> str:
    return worker.get("/health")["model_version"]


def fused_now(worker: WorkerProcess, users: set[str]) -> dict[str, list[float]]:
    """Each user's fused vector for their latest scenario, as the worker computes it now, by row key."""
    answers = [worker.get(f"/users/{u}/interest") for u in users]
    return {f"{a['user_id']}|{a['scenario']}": a["fused"] for a in answers}


def check_live_vectors(milvus_uri: str, expected: str, fused: dict[str, list[float]]) -> None:
    """The aliases name `expected`'s collections, the only ones left (IU_MODEL_GRACE_S=0), which hold a
    vector for every user, equal to what the worker computed from the user's state (float16 views: to
    1e-3), and every published cold item."""
    client = MilvusClient(milvus_uri)
    try:
        assert sorted(client.list_collections()) == sorted(collections(expected))
        assert client.describe_alias("user_interests")["collection_name"] == collections(expected)[1]
        for alias in ("items", "user_interests"):  # a collection reopened from a milvus-lite file starts released
            client.load_collection(alias)
        rows = client.query("user_interests", filter='key != ""', output_fields=["key", "model_version", "vector"],
                            limit=16_384, consistency_level="Strong")
        by_key = {r["key"]: r for r in rows}
        assert {r["model_version"] for r in rows} == {expected}
        assert set(fused) <= by_key.keys()  # every user's vector for the scenario of their latest event
        far = {u: max(abs(a - b) for a, b in zip(by_key[u]["vector"], v, strict=True)) for u, v in fused.items()}
        assert not {u: d for u, d in far.items() if d > 1e-3}, far
        items = client.query("items", filter='item_id like "new-%"', output_fields=["item_id", "model_version"],
                             consistency_level="Strong")
        assert sorted((r["item_id"], r["model_version"]) for r in items) == [(it.item_id, expected) for it in COLD]
    finally:
        client.close()
        if not milvus_uri.startswith("http"):  # milvus-lite: one process per file, and the worker starts again
            server_manager_instance.release_server(milvus_uri)


def test_deploy_mid_stream_restart_and_rollback(tiny_model, tiny_v2, stack, tmp_path, consume_all):
    v1, v2 = version(tiny_model), version(tiny_v2)
    env = worker_env(stack, tiny_model, tmp_path, "w", IU_MODEL_GRACE_S="0")  # old versions dropped at once
    prepare_topics(Settings.from_env(env), stack.bootstrap)
    events, more = ml100k(N_EVENTS + 1000)[:N_EVENTS], ml100k(N_EVENTS + 1000)[N_EVENTS:]
    last = more[-1].ts
    more += [Event(f"cold-{u}-{k}", u, COLD[(k + j) % len(COLD)].item_id, "click", "home", last + 1000 * k)
             for j, u in enumerate(sorted({e.user_id for e in more})[:6]) for k in range(len(COLD))]  # new items
    users = {e.user_id for e in events}
    prod = stack.producer()
    publish_catalog(prod, [*read_items(ML100K / "items.csv"), *COLD])
    first, during, after = events[:1000], events[1000:2000], events[2000:]
    publish(prod, event_messages(first), progress=False)
    log = tmp_path / "worker.log"
    with WorkerProcess(env, log) as worker:
        assert served(worker) == v1
        deployed = iu("model", "deploy", str(tiny_v2), env=env, timeout=60)
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        publish(prod, event_messages(during), progress=False)  # consumed while v2 is prepared
        waited = iu("model", "deploy", str(tiny_v2), "--wait", "180", env=env, timeout=240)
        assert waited.returncode == 0, waited.stderr[-2000:]
        publish(prod, event_messages(after), progress=False)
        digest = wait_applied(worker, events, 180)
        assert digest["events_applied"] == N_EVENTS and served(worker) == v2
        assert worker.metric("iu_model_rollouts_total") == 1 and worker.get("/health")["rollout"] is None
        fused = fused_now(worker, users)
        emitted = worker.get("/stats")["recommendations_out"]
        status = json.loads(iu("model", "status", env=env, timeout=60).stdout)
        assert status["live"] == v2 and status["previous"] == v1
        assert [w["serving"] for w in status["workers"] if not w["stale"]] == [v2]
    by_partition: dict[int, list[str]] = defaultdict(list)  # each partition's lists in offset order
    for msg in consume_all(stack.bootstrap, RECOMMENDATIONS, lambda got: len(got) >= emitted, timeout=60):
        by_partition[msg.partition()].append(Recommendation.from_json(msg.value()).model_version)
    assert sum(map(len, by_partition.values())) == emitted
    for versions in by_partition.values():  # v1's lists, then v2's: none of v1 after the switch
        assert versions == sorted(versions, key=[v1, v2].index), versions
    for p in {partition_of(e.user_id.encode(), 4) for e in after}:  # events after the switch: v2's lists
        assert by_partition[p][-1] == v2, (p, {q: Counter(v) for q, v in by_partition.items()},
                                           Counter(partition_of(e.user_id.encode(), 4) for e in after))
    check_live_vectors(env.get("IU_MILVUS_URI") or stack.milvus_uri, v2, fused)

    with WorkerProcess(env, tmp_path / "restarted.log") as worker:  # serves the live version; knows every item
        assert served(worker) == v2 and worker.get("/stats")["items"] >= 1682 + len(COLD)
        rolled = iu("model", "rollback", "--wait", "180", env=env, timeout=240)
        assert rolled.returncode == 0, rolled.stderr[-2000:]
        assert served(worker) == v1 and worker.get("/state/digest")["interactions"] == digest["interactions"]
        fused = fused_now(worker, users)
    check_live_vectors(env.get("IU_MILVUS_URI") or stack.milvus_uri, v1, fused)

    with WorkerProcess(env, tmp_path / "shadow.log") as worker:  # v2 in shadow beside v1, then promoted
        shadowed = iu("model", "deploy", str(tiny_v2), "--shadow", env=env, timeout=60)
        assert shadowed.returncode == 0, shadowed.stderr[-2000:]
        deadline = time.monotonic() + 120
        while (worker.get("/health").get("shadow") or {}).get("version") != v2:
            assert time.monotonic() < deadline, worker.get("/health")
            time.sleep(0.5)
        publish(prod, event_messages(more), progress=False)
        wait_applied(worker, [*events, *more], 120)
        quality = worker.get("/stats")["quality"]
        assert quality["shadow"]["version"] == v2 and quality["shadow"]["trials"] > 0, quality
        assert {"hit_rate_ours", "hit_rate_challenger", "p_value"} <= quality["shadow"].keys()
        assert any(k.endswith(":challenger") for k in quality["rolling_hit_rate"])
        promoted = iu("model", "promote", "--wait", "180", env=env, timeout=240)
        assert promoted.returncode == 0, promoted.stderr[-2000:]
        assert served(worker) == v2 and worker.get("/health")["shadow"] is None
        fused = fused_now(worker, users | {e.user_id for e in more})
    check_live_vectors(env.get("IU_MILVUS_URI") or stack.milvus_uri, v2, fused)

    # continual training: v2 fine-tuned on the event log; the items published since it was trained
    # join its vocabulary with learned vectors
    tuned = tmp_path / "tuned"
    trained = iu("train", "--resume", str(tiny_v2), "--from-topics", "--out", str(tuned), "--epochs", "1",
                 "--time-budget", "120", "--device", "cpu", env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    model, meta = load_model(tuned)
    assert meta["resumed_from"] == v2 and meta["item_ids"][:1682] == load_model(tiny_v2)[1]["item_ids"]
    rows = [meta["item_ids"].index(it.item_id) + 1 for it in COLD]
    assert model.trained_mask[rows].all() and model.cfg.n_items == 1682 + len(COLD)
