"""Keeps the worker consuming while the vector store is down, and makes Milvus converge after.

The user state lives in the Faust table, not in Milvus, so an outage must not stop consumption:
- user vectors that cannot be written wait in a pending map keyed by (user, scenario), newest
  replacing older, and are written once Milvus answers again: at convergence every user's latest
  vector is there. The map is capped (`capacity`); beyond it the oldest wait for their user's next
  event instead, and are counted (iu_vectors_dropped_total).
- searches are not attempted while the store is down: no list is emitted, rather than one from a
  stale or missing vector. The user's next event after the outage emits a fresh one.
- calls are retried on a backoff that doubles from `base_s` to `max_s`, so a dead server costs one
  timed-out call per backoff period, not one per batch.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from streams import metrics
from streams.errors import VectorStoreError
from streams.vectors import UserRow, VectorStore

FLUSH_CHUNK = 1024


class StoreGuard:
    def __init__(self, store: VectorStore, capacity: int, base_s: float = 0.5, max_s: float = 30.0) -> None:
        self.store, self.capacity, self.base_s, self.max_s = store, capacity, base_s, max_s
        self.pending: OrderedDict[str, UserRow] = OrderedDict()
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        metrics.STORE_UP.set(1)  # the store answered at start-up, or the worker would not have started

    @property
    def up(self) -> bool:
        return self.failures == 0

    def _may_call(self) -> bool:
        """Up, or down and due for a retry, which starts by loading the collections again."""
        if self.up:
            return True
        if time.monotonic() < self.retry_at:
            return False
        try:
            self.store.load()
        except VectorStoreError as e:
            self._failed(e)
            return False
        return True

    def _failed(self, e: VectorStoreError) -> None:
        self.failures += 1
        self.last_error = str(e)[:300]
        self.retry_at = time.monotonic() + min(self.base_s * 2 ** (self.failures - 1), self.max_s)
        metrics.STORE_UP.set(0)

    def _succeeded(self) -> None:
        self.failures = 0
        self.last_error = ""
        metrics.STORE_UP.set(1)

    def upsert_users(self, rows: list[UserRow]) -> None:
        for r in rows:
            self.pending.pop(r.key, None)
            self.pending[r.key] = r
        while len(self.pending) > self.capacity:
            self.pending.popitem(last=False)
            metrics.VECTORS_DROPPED.inc()
        self.flush()

    def flush(self) -> None:
        """Writes what is pending, oldest first, if the store may be called now."""
        while self.pending and self._may_call():
            chunk = list(self.pending.values())[:FLUSH_CHUNK]
            try:
                self.store.upsert_users(chunk)
            except VectorStoreError as e:
                self._failed(e)
                break
            self._succeeded()
            for r in chunk:
                if self.pending.get(r.key) is r:  # not replaced by a newer vector meanwhile
                    del self.pending[r.key]
        metrics.VECTORS_PENDING.set(len(self.pending))

    def search_items(self, vectors: np.ndarray, limit: int) -> list[list[tuple[str, float]]] | None:
        """The store's answer, or None while it is down (nothing to rank from)."""
        if not self._may_call():
            return None
        try:
            found = self.store.search_items(vectors, limit)
        except VectorStoreError as e:
            self._failed(e)
            return None
        self._succeeded()
        return found

    def status(self) -> dict:
        return {"up": self.up, "pending_vectors": len(self.pending), "consecutive_failures": self.failures,
                "last_error": self.last_error}
