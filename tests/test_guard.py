"""StoreGuard's bookkeeping against a scripted store (pure logic; the live outage is in test_reliability),
and against milvus-lite and a Milvus server: a hung server, rows a store refuses."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pymilvus import MilvusClient

from streams.errors import VectorStoreError
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.vectors.guard import StoreGuard
from streams.vectors.store import ItemRow, UserRow, VectorStore, collections, drop_version, id_filter, live_collection
from streams.worker.runtime import load_processor


class ScriptedStore:
    """Fails while `down`; records what reached it."""

    def __init__(self) -> None:
        self.down = False
        self.written: dict[str, UserRow | ItemRow] = {}
        self.order: list[str] = []  # what was written, by kind, in order
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise VectorStoreError("connection refused")

    def load(self) -> None:
        self._call()

    def reachable(self) -> bool:
        return not self.down

    def upsert_users(self, rows: list[UserRow]) -> None:
        self._call()
        self.written.update({r.key: r for r in rows})
        self.order.append("users")

    def upsert_items(self, rows: list[ItemRow]) -> None:
        self._call()
        self.written.update({r.key: r for r in rows})
        self.order.append("items")

    def search_items(self, vectors: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        self._call()
        return [[("i1", 1.0)] for _ in vectors]


def row(user: str, x: float) -> UserRow:
    return UserRow(user, "home", np.full(4, x, np.float32), "v")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The guard's monotonic clock, which the test sets."""
    now = [0.0]
    monkeypatch.setattr("streams.vectors.guard.time.monotonic", lambda: now[0])
    return now


def fresh() -> WorkerMetrics:
    """Metrics on a registry of the test's own: what it reads is what this test counted."""
    return WorkerMetrics(CollectorRegistry())


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def down(capacity: int, **backoff: float) -> tuple[ScriptedStore, StoreGuard]:
    """A guard on a scripted store that is down."""
    store = ScriptedStore()
    guard = StoreGuard(store, capacity, fresh(), **backoff)  # type: ignore[arg-type]
    store.down = True
    return store, guard


def test_pending_vectors_are_capped_newest_wins_and_written_when_back(clock):
    store, guard = down(capacity=3)
    guard.upsert_users([row("a", 1), row("b", 1)])
    assert not guard.up and guard.search_items(np.zeros((2, 4)), 5) is None  # no search while down
    guard.upsert_users([row("a", 2), row("c", 1), row("d", 1)])  # a replaced; b, the oldest, is evicted
    assert list(guard.users.rows) == ["a|home", "c|home", "d|home"]
    assert sample(guard.metrics, "iu_vectors_dropped_total", kind="user") == 1
    store.down = False
    clock[0] = 100.0
    guard.flush()
    assert guard.up and not guard.users.rows
    assert float(store.written["a|home"].vector[0]) == 2.0 and "b|home" not in store.written
    assert guard.search_items(np.zeros((2, 4)), 5) == [[("i1", 1.0)], [("i1", 1.0)]]


def test_catalog_items_published_while_down_wait_and_are_written_before_users(clock):
    store, guard = down(capacity=10)
    guard.upsert_users([row("a", 1)])
    guard.upsert_items([ItemRow("i1", "one", np.ones(4, np.float32), "v")])  # no raise: kept
    guard.upsert_items([ItemRow("i1", "one, retitled", np.ones(4, np.float32), "v")])
    assert guard.status() | {"last_error": ""} == {"up": False, "pending_vectors": 1, "pending_items": 1,
                                                   "consecutive_failures": 1, "last_error": ""}
    store.down = False
    clock[0] = 100.0
    guard.flush()
    assert store.order == ["items", "users"] and store.written["i1"].title == "one, retitled"  # type: ignore[union-attr]
    assert guard.status()["pending_items"] == 0 and guard.up


def test_retries_back_off_doubling_up_to_the_cap(clock):
    store, guard = down(capacity=10, base_s=0.5, max_s=4.0)
    guard.upsert_users([row("a", 1)])
    attempts = []
    for step in range(400):  # 40 s in 0.1 s ticks: a flush every tick, as a busy worker would
        clock[0] = step * 0.1
        before = store.calls
        guard.flush()
        if store.calls > before:
            attempts.append(round(clock[0], 1))
    gaps = np.diff(attempts)
    assert [round(g, 1) for g in gaps[:4]] == [1.0, 2.0, 4.0, 4.0], attempts
    assert max(gaps) <= 4.1 and len(attempts) <= 12, attempts


def test_milvus_timeout_setting_bounds_each_call_to_a_hung_server(tiny_model, shared_milvus):
    """IU_MILVUS_TIMEOUT_S reaches the worker's vector store: against a Milvus server that holds its
    connections and answers nothing (SIGSTOP), a search gives up after about that long and the store
    counts as down."""
    settings = Settings.from_env({"IU_MODEL": str(tiny_model), "IU_MILVUS_URI": shared_milvus.uri,
                                  "IU_MILVUS_TIMEOUT_S": "1"})
    processor = load_processor(settings, fresh())
    query = np.ones((1, processor.encoder.cfg.dim), np.float32)
    assert processor.vectors.search_items(query, 5) is not None
    shared_milvus.pause()
    try:
        started = time.monotonic()
        assert processor.vectors.search_items(query, 5) is None
        waited = time.monotonic() - started
    finally:
        shared_milvus.resume()
    assert not processor.vectors.up
    assert 0.9 < waited < 3.0, f"a call to a hung server took {waited:.1f} s with IU_MILVUS_TIMEOUT_S=1"


@pytest.fixture(params=["milvus-lite", "server"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    """The vector store on each stack: milvus-lite in this process, or the session's Milvus server."""
    if request.param == "milvus-lite":
        return str(tmp_path / "milvus.db")
    return request.getfixturevalue("shared_milvus").uri


def test_rows_the_store_refuses_are_left_out_and_never_taken_for_an_outage(milvus_uri):
    """A batch of rows with a few the store cannot take (a vector of the wrong length on both; a NaN and
    an over-long id on a server, which checks them): the others are written, those are counted as
    refused, and the store stays up, with nothing pending and lists still searched."""
    dim = 4
    metrics = fresh()
    store = VectorStore(MilvusClient(milvus_uri), dim, 10, metrics, "v1")
    guard = StoreGuard(store, 100, metrics)
    good = [UserRow(f"u{k}", "home", np.full(dim, k + 1, np.float32), "v") for k in range(40)]
    bad = [UserRow("wrong-length", "home", np.ones(dim + 1, np.float32), "v"),
           UserRow("not-a-number", "home", np.array([np.nan, 1, 1, 1], np.float32), "v"),
           UserRow("電" * 90, "home", np.ones(dim, np.float32), "v")]
    rows = good[:13] + bad[:1] + good[13:27] + bad[1:] + good[27:]
    guard.upsert_users(rows)
    guard.upsert_items([ItemRow("i1", "one", np.ones(dim, np.float32), "v"),
                        ItemRow("i2", "two", np.ones(dim + 2, np.float32), "v")])
    assert guard.status() == {"up": True, "pending_vectors": 0, "pending_items": 0, "consecutive_failures": 0,
                              "last_error": ""}
    client = MilvusClient(milvus_uri)
    stored = {r["key"] for r in client.query(store.users, filter=id_filter("key", [r.key for r in rows]),
                                             output_fields=["key"], consistency_level="Strong")}
    assert {r.key for r in good} <= stored and "wrong-length|home" not in stored
    assert sample(metrics, "iu_vectors_refused_total", kind="user") == len(rows) - len(stored)
    assert [r["item_id"] for r in client.query(store.items, filter=id_filter("item_id", ["i1", "i2"]),
                                               output_fields=["item_id"], consistency_level="Strong")] == ["i1"]
    assert guard.search_items(np.ones((1, dim), np.float32), 1) == [[("i1", 4.0)]]


def test_the_aliases_follow_the_live_version_and_survive_its_collections_being_dropped(milvus_uri):
    """A first version takes the unset aliases, a second takes them only when told; a version whose
    collections were dropped under its aliases (a server keeps the aliases) gives them up to the next."""
    client, metrics = MilvusClient(milvus_uri), fresh()
    v1 = VectorStore(client, 4, 10, metrics, "m-v1")
    v1.go_live(only_if_unset=True)
    v2 = VectorStore(client, 4, 10, metrics, "m-v2")
    v2.go_live(only_if_unset=True)
    assert (live_collection(client), live_collection(client, "items")) == (v1.users, v1.items)
    v2.go_live()
    assert (live_collection(client), live_collection(client, "items")) == (v2.users, v2.items)
    assert drop_version(client, "m-v1") and not drop_version(client, "m-v2")  # the live one stays
    for name in (v2.items, v2.users):
        client.drop_collection(name)
    v3 = VectorStore(client, 4, 10, metrics, "m-v3")
    v3.go_live(only_if_unset=True)
    assert sorted(client.list_collections()) == sorted(collections("m-v3"))
    assert (live_collection(client), live_collection(client, "items")) == (v3.users, v3.items)
