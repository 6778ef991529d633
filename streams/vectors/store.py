"""The Milvus side: item vectors to search, user vectors to serve. Always batched.

Each model version has its own pair of collections (`items__<version>`, `user_interests__<version>`):
two models embed items in different spaces, and one search must not mix them. The aliases `items`
and `user_interests` name the live version's pair, for whoever reads Milvus directly; a worker
addresses its own version's pair by name, so that it fills a new version while it serves the old.

milvus-lite (a file path) is the embedded default; a URI names a Milvus server. Every call takes
a whole micro-batch: one upsert, one search, because single calls cost ~70 ms each in milvus-lite.
The index type is checked after creation: Milvus accepts unsupported types and silently falls
back to brute force.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymilvus import CollectionSchema, DataType, MilvusClient, MilvusException

from models.data.contract import MAX_ID_BYTES, MAX_TITLE_BYTES, clip_utf8
from streams.errors import VectorStoreError
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import MILVUS_SERVER_SCHEMES

log = logging.getLogger(__name__)

ITEMS, USERS = "items", "user_interests"  # the aliases of the live version's collections
INDEX = {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 200}}
SEARCH_PARAMS = {"metric_type": "IP", "params": {"ef": 128}}


# A Milvus server's default read serves a snapshot up to seconds old, which may lack what was just
# written. Searches read this worker's own writes (Session: the new catalog items it upserted); a
# look-up of items that another worker published reads every acknowledged write (Strong, ~0.3 s
# more on a 2.3 server). milvus-lite is strong anyway.
SESSION, STRONG = "Session", "Strong"


def id_filter(field: str, ids: list[str]) -> str:
    """`field in [...]` with each id a string literal escaped for Milvus's expression parser, so
    quotes, backslashes and control characters in ids are data, not syntax. (pymilvus's `get`
    pastes ids between quotes unescaped.)"""
    return f"{field} in [{', '.join(json.dumps(i, ensure_ascii=False) for i in ids)}]"


@dataclass(frozen=True, slots=True)
class ItemRow:
    item_id: str
    title: str
    vector: np.ndarray
    model_version: str

    @property
    def key(self) -> str:
        return self.item_id


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    scenario: str
    vector: np.ndarray
    model_version: str

    @property
    def key(self) -> str:
        return f"{self.user_id}|{self.scenario}"


def collections(version: str) -> tuple[str, str]:
    """The item and user collections of a model version (Milvus names: letters, digits, underscores)."""
    slug = re.sub(r"[^0-9A-Za-z_]", "_", version)
    return f"{ITEMS}__{slug}", f"{USERS}__{slug}"


def live_collection(client: MilvusClient, alias: str = USERS) -> str | None:
    """The collection `alias` names, or None when there is no such alias (asked first: pymilvus logs a
    traceback for every call that fails)."""
    if not client.has_collection(alias) or alias in client.list_collections():
        return None
    return client.describe_alias(alias)["collection_name"]


def drop_version(client: MilvusClient, version: str) -> bool:
    """Drops a version's collections unless an alias names them; whether they are gone."""
    pair = collections(version)
    if pair[1] == live_collection(client):
        return False
    for name in pair:
        if client.has_collection(name):
            client.drop_collection(name)
    return True


def connect(target: str) -> MilvusClient:
    if not target.startswith(MILVUS_SERVER_SCHEMES):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(target)
    except Exception as e:
        what = getattr(e, "message", None) or str(e)
        fix = ("start it, or unset IU_MILVUS_URI to use milvus-lite" if target.startswith(MILVUS_SERVER_SCHEMES)
               else "is another process using this file? Set IU_MILVUS_URI to another path")
        raise VectorStoreError(f"cannot open Milvus at {target} ({what}): {fix}") from e


class VectorStore:
    def __init__(self, client: MilvusClient, dim: int, timeout_s: float, metrics: WorkerMetrics, version: str
                 ) -> None:
        self.client = client
        self.dim = dim
        self.metrics = metrics
        self.timeout = timeout_s  # per call: pymilvus otherwise retries a dead server for minutes
        self.items, self.users = collections(version)
        self._ensure(self.items, self._item_schema())
        self._ensure(self.users, self._user_schema())

    def go_live(self, only_if_unset: bool = False) -> None:
        """Points the aliases at this version (with `only_if_unset`, only where they name nothing yet).
        A collection that has an alias's name (written before versions had collections of their own)
        is dropped first: everything in it is derived from the model and the state, and is written
        again in this version's collections."""
        for alias, name in ((ITEMS, self.items), (USERS, self.users)):
            if alias in self.client.list_collections():
                log.warning("dropping the unversioned Milvus collection %s: %s takes its name as an alias", alias,
                            name)
                self.client.drop_collection(alias)
            current = live_collection(self.client, alias)
            if current is None:
                try:
                    self.client.create_alias(name, alias)
                except MilvusException:  # an alias whose collection was dropped (a server keeps it)
                    self.client.alter_alias(name, alias)
            elif current != name and not only_if_unset:
                self.client.alter_alias(name, alias)

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Timed and counted; whatever the client raises (gRPC, MilvusException, ...) becomes one error
        type, which is what the worker's outage handling (streams/vectors/guard.py) catches."""
        with self.metrics.milvus_call(operation):
            try:
                yield
            except Exception as e:
                raise VectorStoreError(f"{operation}: {e}") from e

    def _item_schema(self) -> CollectionSchema:
        s = self.client.create_schema(auto_id=False)
        s.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        s.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
        s.add_field("model_version", DataType.VARCHAR, max_length=128)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        return s

    def _user_schema(self) -> CollectionSchema:
        s = self.client.create_schema(auto_id=False)
        s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=2 * MAX_ID_BYTES)
        s.add_field("user_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        s.add_field("scenario", DataType.VARCHAR, max_length=64)
        s.add_field("updated_at", DataType.INT64)
        s.add_field("model_version", DataType.VARCHAR, max_length=128)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        return s

    def _ensure(self, name: str, schema: CollectionSchema) -> None:
        if not self.client.has_collection(name):
            index = self.client.prepare_index_params()
            index.add_index("vector", **INDEX)
            self.client.create_collection(name, schema=schema, index_params=index)
        found = self.client.describe_index(name, "vector").get("index_type")
        if found != INDEX["index_type"]:
            raise VectorStoreError(f"collection {name} has index {found}, expected {INDEX['index_type']}")
        self.client.load_collection(name)  # a collection reopened from disk starts released

    def load(self) -> None:
        """Loads both collections for search; a restarted Milvus starts with them released."""
        with self._call("load"):
            for name in (self.items, self.users):
                self.client.load_collection(name, timeout=self.timeout)

    def reachable(self) -> bool:
        """Whether the server answers a cheap call now: tells a row it refuses from an outage."""
        try:
            self.client.has_collection(self.users, timeout=self.timeout)
        except Exception:
            return False
        return True

    def item_version(self, item_id: str) -> str | None:
        rows = self.client.query(self.items, filter=id_filter("item_id", [item_id]), output_fields=["model_version"],
                                 consistency_level=STRONG, timeout=self.timeout)
        return rows[0]["model_version"] if rows else None

    def upsert_items(self, rows: list[ItemRow], chunk: int = 2048, bulk_timeout_s: float | None = None) -> None:
        """Rows are visible to searches and strong queries once upserted. Given `bulk_timeout_s` (a
        bulk write: the trained catalog at start-up) each call may take that long and the rows are
        flushed, which waits seconds on a Milvus server for the segments to be sealed and persisted."""
        timeout = bulk_timeout_s or self.timeout
        with self._call("upsert_items"):
            for i in range(0, len(rows), chunk):
                self.client.upsert(self.items, [
                    {"item_id": r.item_id, "title": clip_utf8(r.title, MAX_TITLE_BYTES),
                     "model_version": r.model_version, "vector": r.vector.astype(np.float32).tolist()}
                    for r in rows[i:i + chunk]
                ], timeout=timeout)
            if bulk_timeout_s:
                self.client.flush(self.items, timeout=timeout)

    def get_items(self, ids: list[str]) -> dict[str, tuple[str, np.ndarray]]:
        """Items other workers published: id -> (title, vector)."""
        if not ids:
            return {}
        with self._call("get_items"):  # strong: an item another worker has just published must be found
            rows = self.client.query(self.items, filter=id_filter("item_id", ids), consistency_level=STRONG,
                                     output_fields=["item_id", "title", "vector"], timeout=self.timeout)
        return {r["item_id"]: (r["title"], np.asarray(r["vector"], np.float32)) for r in rows}

    def upsert_users(self, rows: list[UserRow]) -> None:
        if not rows:
            return
        now = int(time.time() * 1000)
        with self._call("upsert_users"):
            self.client.upsert(self.users, [
                {"key": r.key, "user_id": r.user_id, "scenario": r.scenario, "updated_at": now,
                 "model_version": r.model_version, "vector": r.vector.astype(np.float32).tolist()}
                for r in rows
            ], timeout=self.timeout)

    def search_items(self, vectors: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        """Top `limit` items by inner product for each row of `vectors`, in one call."""
        if len(vectors) == 0:
            return []
        with self._call("search"):  # only the key as output: [] has milvus-lite build every field of every hit
            hits = self.client.search(self.items, data=vectors.astype(np.float32).tolist(), limit=limit,
                                      anns_field="vector", search_params=SEARCH_PARAMS, output_fields=["item_id"],
                                      consistency_level=SESSION, timeout=self.timeout)
        # ids and distances in bulk: indexing a hit decodes it field by field (~20 µs a hit in pymilvus 3)
        return [list(zip(row.ids, map(float, row.distances), strict=True)) for row in hits]
