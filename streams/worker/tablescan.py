"""Reads of every user's state, off the event loop: the size gauges and the state digest.

With RocksDB each count and each value is a read from disk (Faust's store counts by walking its
keys); on the event loop a large table would hold up heartbeats, HTTP and micro-batches. These run
in a thread. RocksDB iterators read a consistent view while the loop writes; the in-memory store's
dict is copied in one C call, which no write on the loop can interleave with, before it is walked.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import faust
from faust.stores.memory import Store as MemoryStore

from streams.core.state import UserState

RETRIES = 3  # a walk that meets a rebalance (the store's set of partitions changing) starts over


def pairs(table: faust.Table) -> list[tuple[bytes, bytes]]:
    """This worker's (user key, state bytes), as of about now; call in a thread."""
    store = table.data
    if isinstance(store, MemoryStore):
        return list(store.data.items())
    for _ in range(RETRIES - 1):
        with contextlib.suppress(RuntimeError):  # "changed size during iteration": assignment moved under it
            return list(store.items())
    return list(store.items())


@dataclass
class TableSize:
    """Users and state bytes at the last scan; `users` is exact at any time for the in-memory store."""

    table: faust.Table
    scanned_users: int = 0
    state_bytes: int = 0

    @property
    def users(self) -> int:
        return len(self.table) if isinstance(self.table.data, MemoryStore) else self.scanned_users

    def scan(self) -> None:
        """Counts users and bytes; call in a thread."""
        n = size = 0
        for _, value in pairs(self.table):
            n += 1
            size += len(value)
        self.scanned_users, self.state_bytes = n, size


def digest(table: faust.Table, load: Callable[[bytes], UserState]) -> dict:
    """Hashes over this worker's user states, to compare runs; call in a thread. `sha256`: the whole
    state but the skipped counter (it counts redeliveries, which differ between runs by design); equal
    after a restart. `interactions`: buffers, counts and watermarks only; equal for any two runs over
    the same input, however a user's events on different topics interleaved (which moves the views)."""
    full, interactions = hashlib.sha256(), hashlib.sha256()
    users = applied = 0
    for k, value in sorted(pairs(table)):
        state = load(value)
        users += 1
        applied += state.applied
        state.skipped = 0
        for h, raw in ((full, state.to_bytes()), (interactions, state.interactions_bytes())):
            h.update(len(k).to_bytes(4, "little") + k + len(raw).to_bytes(4, "little") + raw)
    return {"users": users, "events_applied": applied, "sha256": full.hexdigest(),
            "interactions": interactions.hexdigest()}
