"""One micro-batch from consumed records to outputs: decode → state → vectors → recommendations.

Kept free of Faust so that it can be tested and benchmarked alone; the Faust agent (streams/worker/app.py)
feeds it records plus the touched users' stored states and writes back what it returns. Whatever the
batch size, it costs one encoder forward pass, one user-vector upsert and one ANN search.
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import replace

import numpy as np

from models.data.contract import ACTIONS, Event, Item, Recommendation
from models.data.dataset import UserSeq
from models.inference import InterestEncoder, pad_windows
from streams.core.batch import Accepted, BatchResult, DeadLetter, Emission, Ranked, Record
from streams.core.decode import Reason, Rejected, decode_event
from streams.core.rank import rerank
from streams.core.state import Outcome, Step, UserState, space_of
from streams.errors import VectorStoreError
from streams.kafka.topics import events_topic
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.vectors.catalog import Catalog
from streams.vectors.guard import StoreGuard
from streams.vectors.store import UserRow, VectorStore
from streams.worker.threads import ComputeThreads


class Processor:
    def __init__(self, encoder: InterestEncoder, catalog: Catalog, store: VectorStore, settings: Settings,
                 metrics: WorkerMetrics) -> None:
        missing = set(settings.scenarios) - set(encoder.cfg.scenarios)
        if missing:
            raise ValueError(f"scenarios {sorted(missing)} are not known to model {encoder.model_version}; "
                             f"it was trained on {list(encoder.cfg.scenarios)}")
        self.encoder, self.catalog, self.settings, self.metrics = encoder, catalog, settings, metrics
        self.vectors = StoreGuard(store, settings.pending_vectors, metrics)
        self.space = space_of(encoder.model_version)
        self.scen_index = {s: k + 1 for k, s in enumerate(encoder.cfg.scenarios)}
        self.act_index = {a: k + 1 for k, a in enumerate(ACTIONS)}
        self.topic_index = {events_topic(s): self.scen_index[s] for s in settings.scenarios}
        self.n_views, self.dim = encoder.layout.n, encoder.cfg.dim
        self.threads = ComputeThreads(*settings.thread_budget)
        self.touched: set[str] | None = None  # users whose state changed, while a rollout records them
        self.source = ""  # the model folder, as the worker reports it on iu.models
        self.challenger: Processor | None = None  # a shadow model: lists scored, never shown (`shadow_lists`)

    def serve(self, other: Processor) -> None:
        """Takes over `other`'s model, catalog and vector store: a hot swap, between two batches.
        States the old model wrote are moved into the new space as they are read (`load_state`)."""
        if other.encoder.cfg.scenarios != self.encoder.cfg.scenarios:
            raise ValueError(f"model {other.encoder.model_version} has scenarios {other.encoder.cfg.scenarios}, "
                             f"not {self.encoder.cfg.scenarios}: states record scenarios by position")
        self.encoder, self.catalog, self.vectors, self.space = other.encoder, other.catalog, other.vectors, other.space
        self.dim, self.source = other.dim, other.source
        if self.challenger is other:  # a promoted shadow model
            self.challenger = None

    def model_labels(self) -> dict[str, str]:
        """`iu_model_info`'s labels: the model served and where its encoder runs."""
        encoder = self.encoder
        return {"model_version": encoder.model_version, "device": str(encoder.device), "dim": str(self.dim),
                "max_len": str(encoder.cfg.max_len)}

    def add_items(self, items: list[Item]) -> None:
        """Catalog records: known here at once, in the vector store once it answers."""
        self.vectors.upsert_items(self.catalog.add(items))
        if self.challenger is not None:
            self.challenger.add_items(items)

    def load_state(self, raw: bytes | None) -> UserState:
        """A stored state in this model's space: one another model wrote has its views recomputed from its
        ring with this model's item vectors (items this worker cannot place are left out)."""
        return self.in_space(UserState.empty(self.n_views, self.dim) if raw is None
                             else UserState.from_bytes(raw, self.n_views))

    def in_space(self, st: UserState) -> UserState:
        """`st` with its views in this model's space (recomputed from the ring if another model wrote
        them; in place)."""
        if st.space not in (0, self.space):  # 0: a format-2 state, written before spaces were recorded
            known = np.array([i in self.catalog for i in st.items], bool)
            st.reproject(self.encoder.layout, self.space, known,
                         self.catalog.matrix([i for i in st.items if i in self.catalog]))
        st.space = self.space
        return st

    def latest_scenario(self, st: UserState) -> str:
        """The scenario of the user's latest event."""
        return self.encoder.cfg.scenarios[int(st.ring["scen"][-1]) - 1]

    def backfill(self, pairs: list[tuple[bytes, bytes | None]]) -> None:
        """Writes the users' vectors (user key, stored state) as this model computes them from their
        states, for their latest scenario, into this model's collection; raises VectorStoreError."""
        states = [(k.decode(errors="replace"), self.load_state(raw)) for k, raw in pairs if raw is not None]
        requests = [(u, st, self.latest_scenario(st)) for u, st in states if len(st.ring)]
        if requests:
            fused, _ = self.fused(requests)
            self.vectors.store.upsert_users([UserRow(u, s, fused[n], self.encoder.model_version)
                                             for n, (u, _, s) in enumerate(requests)])

    def process(self, records: list[Record], stored: dict[str, bytes | None]) -> BatchResult:
        """`stored`: the current state bytes of every user whose key appears in `records`."""
        self.metrics.compute_threads.set(self.threads.fit(backlog=len(records) >= self.settings.batch_size))
        out = BatchResult()
        with self.metrics.stage("decode"):
            valid = self._decode(records, out)
        states: dict[str, UserState] = {}
        triggers: dict[str, tuple[Record, Event]] = {}
        with self.metrics.stage("state"):
            by_user: dict[str, list[int]] = {}
            for n, (_, ev) in enumerate(valid):
                by_user.setdefault(ev.user_id, []).append(n)
            outcomes: list[Outcome] = [Outcome.APPLIED] * len(valid)
            for uid, ns in by_user.items():
                st = states[uid] = self.load_state(stored.get(uid))
                steps = [self._step(*valid[n]) for n in ns]
                vecs = self.catalog.matrix([s.item_id for s in steps])
                for n, outcome in zip(ns, st.apply_many(self.encoder.layout, self.encoder.cfg.max_len, steps, vecs),
                                      strict=True):
                    outcomes[n] = outcome
                    if outcome in (Outcome.APPLIED, Outcome.LATE):
                        triggers[uid] = valid[n]
            out.accepted = [Accepted(ev.user_id, ev.scenario, ev.item_id, ev.action, o)
                            for (_, ev), o in zip(valid, outcomes, strict=True)]
            out.states = {uid: st.to_bytes() for uid, st in states.items()}
            if self.touched is not None:
                self.touched.update(states)
        if triggers:
            users = list(triggers)
            # each list is for the scenario of the user's latest event by time (a late event's list too):
            # the one a request without a scenario gets, and the one a model rollout writes the vector of
            scens = {u: self.latest_scenario(states[u]) for u in users}
            ranked = self.rank([(u, states[u], scens[u]) for u in users], upsert=True)
            shown = [(u, r) for u, r in zip(users, ranked, strict=True) if r is not None]
            out.withheld += len(users) - len(shown)  # Milvus is down: no list rather than a stale one
            challenger = self.challenger.shadow_lists([(u, states[u], scens[u]) for u, _ in shown]) \
                if self.challenger is not None else [None] * len(shown)
            out.challenger = self.challenger.encoder.model_version if self.challenger is not None else ""
            now = time.time()
            for (uid, r), theirs in zip(shown, challenger, strict=True):
                rec, ev = triggers[uid]
                out.recommendations.append((uid.encode(), Recommendation(
                    uid, scens[uid], tuple(r.items), self.encoder.model_version, ev.event_id, ev.ts,
                    rec.timestamp_ms, int(now * 1000)).to_json()))
                out.emitted.append(Emission(uid, scens[uid], [i for i, _ in r.items], frozenset(states[uid].items),
                                            r.fused, now - rec.timestamp_ms / 1000, theirs))
        return out

    def shadow_lists(self, requests: list[tuple[str, UserState, str]]) -> list[list[str] | None]:
        """As a shadow model: the lists this model would show (user, state another model holds, scenario),
        ranked over this model's own item table; nothing is written to Milvus, nor to the states."""
        if not requests:
            return []
        ranked = self.rank([(u, self.in_space(replace(st)), s) for u, st, s in requests], upsert=False, local=True)
        return [[i for i, _ in r.items] if r is not None else None for r in ranked]

    def _step(self, rec: Record, ev: Event) -> Step:
        return Step(ev.event_id, ev.item_id, self.act_index[ev.action], self.scen_index[ev.scenario], ev.ts,
                    self.topic_index.get(rec.topic, 0), rec.partition, rec.offset)

    def _decode(self, records: list[Record], out: BatchResult) -> list[tuple[Record, Event]]:
        valid: list[tuple[Record, Event]] = []
        now_ms = int(time.time() * 1000)
        for rec in records:
            ev = decode_event(rec.value, self.settings.scenarios, now_ms)
            if isinstance(ev, Event) and rec.key != ev.user_id.encode():
                ev = Rejected(Reason.KEY_MISMATCH, f"message key {rec.key!r:.60} is not user_id {ev.user_id!r:.60}")
            if isinstance(ev, Rejected):
                out.dead_letters.append(DeadLetter(rec, ev.reason, ev.detail))
            else:
                valid.append((rec, ev))
        asked = {ev.item_id for _, ev in valid if ev.item_id not in self.catalog}
        try:
            unknown, reason, why = self.catalog.resolve(asked), Reason.UNKNOWN_ITEM, "is not in the catalog"
        except VectorStoreError:  # it may well exist: the event is valid, and replayable from the DLQ
            unknown, reason, why = asked, Reason.ITEM_UNAVAILABLE, "is not known here and Milvus is down"
        out.dead_letters += [DeadLetter(rec, reason, f"item {ev.item_id!r:.60} {why}")
                             for rec, ev in valid if ev.item_id in unknown]
        return [(rec, ev) for rec, ev in valid if ev.item_id not in unknown]

    def _resolve_quietly(self, ids: set[str]) -> None:
        """Items another worker registered, fetched if Milvus answers; while it is down they are simply
        left out of encoder inputs and candidate lists."""
        if ids:
            with suppress(VectorStoreError):
                self.catalog.resolve(ids)

    def history(self, user_id: str, st: UserState) -> UserSeq:
        """The ring as the encoder's input; items this worker cannot place are left out."""
        keep = np.array([i in self.catalog for i in st.items], bool)
        idx = np.array([self.catalog.index[i] for i in st.items if i in self.catalog], np.int64)
        r = st.ring[keep]
        return UserSeq(user_id, idx, r["action"].astype(np.int64), r["scen"].astype(np.int64), r["ts"])

    def fused(self, requests: list[tuple[str, UserState, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Fused vectors and fusion weights for (user, state, target scenario), in one forward."""
        # Items another worker put in a ring (after a rebalance) are fetched once for the whole batch.
        self._resolve_quietly({i for _, st, _ in requests for i in st.items if i not in self.catalog})
        with self.metrics.stage("encode"):
            histories = [self.history(u, st) for u, st, _ in requests]
            short = self.encoder.encode(pad_windows(histories, self.encoder.cfg.max_len))
            views = np.stack([st.views.mean for _, st, _ in requests])
            present = np.stack([st.views.count > 0 for _, st, _ in requests])
            scens = np.array([self.scen_index[s] for _, _, s in requests], np.int64)
            return self.encoder.fuse(short, views, present, scens)

    def rank(self, requests: list[tuple[str, UserState, str]], upsert: bool, local: bool = False
             ) -> list[Ranked | None]:
        """Fused vectors for (user, state, target scenario), ranked lists (None while a Milvus search is
        impossible); one forward, one search (`local`: over the worker's own item table, whatever
        IU_RETRIEVAL says)."""
        fused, weights = self.fused(requests)
        if upsert:
            with self.metrics.stage("upsert"):
                self.vectors.upsert_users([UserRow(u, s, fused[k], self.encoder.model_version)
                                           for k, (u, _, s) in enumerate(requests)])
        k = self.settings.top_k
        limit = min(len(self.catalog), 4 * k + self.encoder.cfg.max_len)
        with self.metrics.stage("search"):
            if self.settings.local_retrieval or local:
                candidates = self.catalog.search(fused, limit)
            else:
                candidates = self.vectors.search_items(fused, limit)
                if candidates is None:
                    return [None] * len(requests)
                self._resolve_quietly({i for c in candidates for i, _ in c if i not in self.catalog})
        with self.metrics.stage("rerank"):
            known = [[(i, s) for i, s in c if i in self.catalog] for c in candidates]  # unresolved: can't re-rank
            lists = rerank(known, [set(st.items) for _, st, _ in requests], self.catalog.matrix, k,
                           self.settings.diversity)
            return [Ranked(items, fused[n], weights[n]) for n, items in enumerate(lists)]
