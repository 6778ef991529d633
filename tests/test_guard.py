"""StoreGuard's bookkeeping against a scripted store (pure logic; the live outage is in test_reliability)."""

from __future__ import annotations

import time

import numpy as np

from streams import metrics
from streams.errors import VectorStoreError
from streams.guard import StoreGuard
from streams.runtime import load_processor
from streams.settings import Settings
from streams.vectors import UserRow


class ScriptedStore:
    """Fails while `down`; records what reached it."""

    def __init__(self) -> None:
        self.down = False
        self.written: dict[str, UserRow] = {}
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise VectorStoreError("connection refused")

    def load(self) -> None:
        self._call()

    def upsert_users(self, rows: list[UserRow]) -> None:
        self._call()
        self.written.update({r.key: r for r in rows})

    def search_items(self, vectors: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        self._call()
        return [[("i1", 1.0)] for _ in vectors]


def row(user: str, x: float) -> UserRow:
    return UserRow(user, "home", np.full(4, x, np.float32), "v")


def test_pending_vectors_are_capped_newest_wins_and_written_when_back(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("streams.guard.time.monotonic", lambda: clock[0])
    store = ScriptedStore()
    guard = StoreGuard(store, capacity=3)  # type: ignore[arg-type]
    store.down = True
    dropped = metrics.VECTORS_DROPPED._value.get()
    guard.upsert_users([row("a", 1), row("b", 1)])
    assert not guard.up and guard.search_items(np.zeros((2, 4)), 5) is None  # no search while down
    guard.upsert_users([row("a", 2), row("c", 1), row("d", 1)])  # a replaced; b, the oldest, is evicted
    assert list(guard.pending) == ["a|home", "c|home", "d|home"]
    assert metrics.VECTORS_DROPPED._value.get() == dropped + 1
    store.down = False
    clock[0] = 100.0
    guard.flush()
    assert guard.up and not guard.pending
    assert float(store.written["a|home"].vector[0]) == 2.0 and "b|home" not in store.written
    assert guard.search_items(np.zeros((2, 4)), 5) == [[("i1", 1.0)], [("i1", 1.0)]]


def test_retries_back_off_doubling_up_to_the_cap(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("streams.guard.time.monotonic", lambda: clock[0])
    store = ScriptedStore()
    guard = StoreGuard(store, capacity=10, base_s=0.5, max_s=4.0)  # type: ignore[arg-type]
    store.down = True
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
    processor = load_processor(settings)
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
