"""The Milvus side: item vectors to search, user vectors to serve. Always batched.

milvus-lite (a file path) is the embedded default; a URI names a Milvus server. Every call takes
a whole micro-batch: one upsert, one search, because single calls cost ~70 ms each in milvus-lite.
The index type is checked after creation: Milvus accepts unsupported types and silently falls
back to brute force.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymilvus import CollectionSchema, DataType, MilvusClient

from streams.metrics import milvus_call

ITEMS, USERS = "items", "user_interests"
INDEX = {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 200}}
SEARCH_PARAMS = {"metric_type": "IP", "params": {"ef": 128}}
ID_CHARS = 256


class VectorStoreError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    scenario: str
    vector: np.ndarray
    model_version: str

    @property
    def key(self) -> str:
        return f"{self.user_id}|{self.scenario}"


def connect(target: str) -> MilvusClient:
    if not target.startswith(("http://", "https://", "tcp://", "unix:")):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(target)
    except Exception as e:
        raise VectorStoreError(f"cannot open Milvus at {target}: {e}") from e


class VectorStore:
    def __init__(self, client: MilvusClient, dim: int) -> None:
        self.client = client
        self.dim = dim
        self._ensure(ITEMS, self._item_schema())
        self._ensure(USERS, self._user_schema())

    def _item_schema(self) -> CollectionSchema:
        s = self.client.create_schema(auto_id=False)
        s.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=ID_CHARS)
        s.add_field("title", DataType.VARCHAR, max_length=1024)
        s.add_field("model_version", DataType.VARCHAR, max_length=128)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        return s

    def _user_schema(self) -> CollectionSchema:
        s = self.client.create_schema(auto_id=False)
        s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=2 * ID_CHARS)
        s.add_field("user_id", DataType.VARCHAR, max_length=ID_CHARS)
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

    def item_version(self, item_id: str) -> str | None:
        rows = self.client.get(ITEMS, ids=[item_id], output_fields=["model_version"])
        return rows[0]["model_version"] if rows else None

    def upsert_items(self, ids: list[str], titles: list[str], vectors: np.ndarray, model_version: str,
                     chunk: int = 2048) -> None:
        with milvus_call("upsert_items"):
            for i in range(0, len(ids), chunk):
                self.client.upsert(ITEMS, [
                    {"item_id": ids[j], "title": titles[j][:1024], "model_version": model_version,
                     "vector": vectors[j].astype(np.float32).tolist()}
                    for j in range(i, min(i + chunk, len(ids)))
                ])
            self.client.flush(ITEMS)

    def get_items(self, ids: list[str]) -> dict[str, tuple[str, np.ndarray]]:
        """Items other workers published: id -> (title, vector)."""
        if not ids:
            return {}
        with milvus_call("get_items"):
            rows = self.client.get(ITEMS, ids=ids, output_fields=["title", "vector"])
        return {r["item_id"]: (r["title"], np.asarray(r["vector"], np.float32)) for r in rows}

    def upsert_users(self, rows: list[UserRow]) -> None:
        if not rows:
            return
        now = int(time.time() * 1000)
        with milvus_call("upsert_users"):
            self.client.upsert(USERS, [
                {"key": r.key, "user_id": r.user_id, "scenario": r.scenario, "updated_at": now,
                 "model_version": r.model_version, "vector": r.vector.astype(np.float32).tolist()}
                for r in rows
            ])

    def search_items(self, vectors: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        """Top `limit` items by inner product for each row of `vectors`, in one call."""
        if len(vectors) == 0:
            return []
        with milvus_call("search"):
            hits = self.client.search(ITEMS, data=vectors.astype(np.float32).tolist(), limit=limit,
                                      anns_field="vector", search_params=SEARCH_PARAMS, output_fields=[])
        return [[(h["item_id"], float(h["distance"])) for h in row] for row in hits]
