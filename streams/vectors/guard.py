"""Keeps the worker consuming while the vector store is down, and makes Milvus converge after.

The user state lives in the Faust table, not in Milvus, so an outage must not stop consumption:
- rows that cannot be written (user vectors, and catalog items published meanwhile) wait in a
  pending map per collection keyed by user and scenario, or by item, newest replacing older, and
  are written once Milvus answers again, items first: at convergence every user's latest vector and
  every published item is there. Each map is capped (`capacity`); beyond it the oldest go, counted
  (iu_vectors_dropped_total): a user's is written again at the user's next event.
- a row the store refuses for its own content (the server answers, and that row alone fails) is
  left out and counted (iu_vectors_refused_total): it never counts as an outage.
- searches are not attempted while the store is down: no list is emitted, rather than one from a
  stale or missing vector. The user's next event after the outage emits a fresh one.
- calls are retried on a backoff that doubles from `base_s` to `max_s`, so a dead server costs one
  timed-out call per backoff period, not one per batch.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from streams.errors import VectorStoreError
from streams.monitoring.metrics import WorkerMetrics
from streams.vectors.store import ItemRow, UserRow, VectorStore

log = logging.getLogger(__name__)

FLUSH_CHUNK = 1024
Row = TypeVar("Row", ItemRow, UserRow)


class Pending(Generic[Row]):
    """One collection's rows waiting for the store: the newest per key, oldest first."""

    def __init__(self, kind: str, write: Callable[[list[Row]], None], capacity: int, metrics: WorkerMetrics) -> None:
        self.kind, self.write, self.capacity, self.metrics = kind, write, capacity, metrics
        self.rows: OrderedDict[str, Row] = OrderedDict()

    def add(self, rows: Sequence[Row]) -> None:
        for r in rows:
            self.rows.pop(r.key, None)
            self.rows[r.key] = r
        while len(self.rows) > self.capacity:
            self.rows.popitem(last=False)
            self.metrics.vectors_dropped.labels(self.kind).inc()

    def oldest(self) -> list[Row]:
        return list(itertools.islice(self.rows.values(), FLUSH_CHUNK))

    def done(self, chunk: list[Row]) -> None:
        for r in chunk:
            if self.rows.get(r.key) is r:  # not replaced by a newer row meanwhile
                del self.rows[r.key]


class StoreGuard:
    def __init__(self, store: VectorStore, capacity: int, metrics: WorkerMetrics, base_s: float = 0.5,
                 max_s: float = 30.0) -> None:
        self.store, self.metrics, self.base_s, self.max_s = store, metrics, base_s, max_s
        self.items: Pending[ItemRow] = Pending("item", store.upsert_items, capacity, metrics)
        self.users: Pending[UserRow] = Pending("user", store.upsert_users, capacity, metrics)
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.metrics.store_up.set(1)  # the store answered at start-up, or the worker would not have started

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
        self.metrics.store_up.set(0)

    def _succeeded(self) -> None:
        self.failures = 0
        self.last_error = ""
        self.metrics.store_up.set(1)

    def upsert_items(self, rows: list[ItemRow]) -> None:
        self.items.add(rows)
        self.flush()

    def upsert_users(self, rows: list[UserRow]) -> None:
        self.users.add(rows)
        self.flush()

    def flush(self) -> None:
        """Writes what is pending, items first (users' searches rank them), oldest first, if the store
        may be called now."""
        for pending in (self.items, self.users):
            while pending.rows and self._may_call():
                chunk = pending.oldest()
                try:
                    self._write(pending, chunk)
                except VectorStoreError as e:
                    self._failed(e)
                    break
                self._succeeded()
                pending.done(chunk)
            self.metrics.vectors_pending.labels(pending.kind).set(len(pending.rows))

    def _write(self, pending: Pending[Row], chunk: list[Row]) -> None:
        """Writes `chunk`. When a write fails and the store still answers, halves are written apart until
        the rows it refuses are alone; those are left out and counted. Raises while it does not answer."""
        try:
            pending.write(chunk)
        except VectorStoreError as e:
            if not self.store.reachable():
                raise
            if len(chunk) > 1:
                half = len(chunk) // 2
                self._write(pending, chunk[:half])
                self._write(pending, chunk[half:])
                return
            log.warning("Milvus refused the %s row %r: %s", pending.kind, chunk[0].key[:200], str(e)[:300])
            self.metrics.vectors_refused.labels(pending.kind).inc()

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
        return {"up": self.up, "pending_vectors": len(self.users.rows), "pending_items": len(self.items.rows),
                "consecutive_failures": self.failures, "last_error": self.last_error}
