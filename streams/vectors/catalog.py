"""The worker's view of the item catalog: item id -> row of the encoder's item table, titles, categories.

Items the model was trained on keep their learned vector; items published later on `iu.items`
get the text-derived one (MiniLM embedding through the model's text projection). The vector store
holds every item, so a worker that never saw an item's catalog record (it went to another worker)
fetches it from there instead of dead-lettering events about it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import numpy as np

from models.data.contract import Item, read_items
from models.inference import InterestEncoder
from models.text import embed_texts
from streams.vectors.store import ItemRow, VectorStore

START_UP_TIMEOUT_S = 300.0  # per Milvus call while the trained catalog is written at start-up


class Catalog:
    def __init__(self, encoder: InterestEncoder, store: VectorStore, trained_ids: list[str],
                 categories: MutableMapping[str, tuple[str, ...]] | None = None) -> None:
        """`categories`: the map to keep items' categories in; the one the monitor reads stays the
        same object when another model's catalog takes over."""
        self.encoder = encoder
        self.store = store
        self.index = {iid: k + 1 for k, iid in enumerate(trained_ids)}
        self.ids = ["", *trained_ids]  # by table row; row 0 is the encoder's padding
        self.trained = len(trained_ids)
        self.titles: dict[str, str] = {}
        self.categories = {} if categories is None else categories  # for the category-novelty drift detector

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def matrix(self, ids: list[str]) -> np.ndarray:
        """The items' vectors as rows of one array, in one indexing of the table."""
        return self.encoder.table[[self.index[i] for i in ids]]

    def search(self, users: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        """Exact top-`limit` (item id, inner product) for each user vector, over every item known here:
        what a Milvus search returns, without leaving the process."""
        rows, scores = self.encoder.top_items(users, limit)
        return [[(self.ids[r], float(s)) for r, s in zip(rr, ss, strict=True)]
                for rr, ss in zip(rows.tolist(), scores.tolist(), strict=True)]

    def publish_trained(self, dataset_items: Path | None) -> int:
        """Put the trained items into the vector store once per model version; how many were written."""
        ids = list(self.index)
        known = {it.item_id: it for it in read_items(dataset_items)} if dataset_items else {}
        self.titles.update({i: known[i].title if i in known else "" for i in ids})
        self.categories.update({i: it.categories for i, it in known.items()})
        if not ids or self.store.item_version(ids[-1]) == self.encoder.model_version:
            return 0
        # before the worker consumes: the whole trained catalog gets the time it needs, and is persisted
        self.store.upsert_items(self.rows(ids), bulk_timeout_s=START_UP_TIMEOUT_S)
        return len(ids)

    def rows(self, ids: list[str]) -> list[ItemRow]:
        """The items as the vector store keeps them."""
        version = self.encoder.model_version
        return [ItemRow(i, self.titles.get(i, ""), v, version) for i, v in zip(ids, self.matrix(ids), strict=True)]

    def add(self, items: list[Item]) -> list[ItemRow]:
        """Catalog records: new or changed titles; cold items get a text-derived vector. Returns the rows
        for the vector store, which the caller writes (streams/vectors/guard.py: kept while Milvus is down)."""
        for it in items:
            self.titles[it.item_id] = it.title
            self.categories[it.item_id] = it.categories
        cold = [it for it in items if self.index.get(it.item_id, self.trained + 1) > self.trained]
        if cold:
            vecs = self.encoder.project_text(embed_texts([it.text for it in cold]))
            self._place([it.item_id for it in cold], vecs)
        return self.rows([it.item_id for it in items])

    def resolve(self, ids: set[str]) -> set[str]:
        """Look unknown items up in the vector store; returns those that exist nowhere."""
        missing = {i for i in ids if i not in self.index}
        found = self.store.get_items(sorted(missing))
        if found:
            self._place(list(found), np.stack([v for _, v in found.values()]))
            self.titles.update({i: t for i, (t, _) in found.items()})
        return missing - found.keys()

    def _place(self, ids: list[str], vecs: np.ndarray) -> None:
        """Changed cold items are overwritten in place; new ones appended to the encoder's table."""
        old = [k for k, i in enumerate(ids) if i in self.index]
        new = [k for k, i in enumerate(ids) if i not in self.index]
        if old:
            self.encoder.update_items(np.array([self.index[ids[k]] for k in old]), vecs[old])
        if new:
            rows = self.encoder.add_items(vecs[new])
            self.index.update({ids[k]: int(r) for k, r in zip(new, rows, strict=True)})
            self.ids += [ids[k] for k in new]
