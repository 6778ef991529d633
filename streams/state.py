"""Per-user interest state: what one event changes, and the compact bytes it is kept as.

The state is the table value in Faust, so its changelog is what a restarted or new worker recovers.
It holds the last L interactions (the transformer's window), the cheap views (O(V*d) per event),
and what makes redelivery harmless: a per-source-partition offset watermark and the hashes of the
recent event ids. The bytes are the truth: every batch decodes, updates and re-encodes, so a
recovered worker continues exactly where the old one stopped.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from models.views import ViewLayout, ViewState

FORMAT_VERSION = 1
RING = np.dtype([("ts", "<i8"), ("hash", "<u8"), ("action", "u1"), ("scen", "u1")])
_HEADER = struct.Struct("<BHHIIq")  # version, ring length, watermark count, applied, skipped, views' last ts
_WATERMARK = struct.Struct("<BHq")  # topic number, partition, offset


class Step(NamedTuple):
    """One event as the state sees it. Indices are the model's (1-based); `topic` numbers the source
    topic (its scenario's index) for the (topic, partition) offset watermark."""

    event_id: str
    item_id: str
    action: int
    scen: int
    ts: int
    topic: int
    partition: int
    offset: int


class Outcome(StrEnum):
    APPLIED = "applied"
    LATE = "late"  # applied, but older than the newest event seen for the user (see ViewState.update)
    REDELIVERED = "redelivered"  # offset at or below the partition watermark: already applied
    DUPLICATE = "duplicate"  # same event_id as one of the user's last L events, or earlier in its micro-batch


def event_hash(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


@dataclass
class UserState:
    ring: np.ndarray  # RING records sorted by (ts, hash): the last L interactions
    items: list[str]  # item ids, aligned with `ring`
    views: ViewState
    watermarks: dict[tuple[int, int], int] = field(default_factory=dict)  # (topic, partition) -> offset
    applied: int = 0
    skipped: int = 0  # redelivered or duplicate events seen and not applied

    @classmethod
    def empty(cls, n_views: int, dim: int) -> UserState:
        return cls(np.zeros(0, RING), [], ViewState.empty(n_views, dim))

    def apply(self, layout: ViewLayout, max_len: int, step: Step, item_vec: np.ndarray) -> Outcome:
        """One event; see apply_many."""
        return self.apply_many(layout, max_len, [step], item_vec[None, :])[0]

    def apply_many(self, layout: ViewLayout, max_len: int, steps: list[Step], item_vecs: np.ndarray) -> list[Outcome]:
        """The user's events of one micro-batch, in arrival order (`item_vecs` aligned with `steps`): each
        applied unless it was before (offset at or below its partition's watermark, or an event id among
        the last L or earlier in this batch); the views advance once for all of them."""
        outcomes: list[Outcome] = []
        seen = set(self.ring["hash"].tolist())
        newest = self.views.last_ts
        take: list[int] = []
        hashes: list[int] = []
        for k, s in enumerate(steps):
            source = (s.topic, s.partition)
            if s.offset <= self.watermarks.get(source, -1):
                outcomes.append(Outcome.REDELIVERED)
                continue
            self.watermarks[source] = s.offset
            h = event_hash(s.event_id)
            if h in seen:
                outcomes.append(Outcome.DUPLICATE)
                continue
            seen.add(h)
            outcomes.append(Outcome.LATE if s.ts < newest else Outcome.APPLIED)
            newest = max(newest, s.ts)
            take.append(k)
            hashes.append(h)
        self.skipped += len(steps) - len(take)
        if take:
            kept = [steps[k] for k in take]
            new = np.array([(s.ts, h, s.action, s.scen) for s, h in zip(kept, hashes, strict=True)], RING)
            self.views.update_many(layout, item_vecs[take], new["action"].astype(np.int64),
                                   new["scen"].astype(np.int64), new["ts"])
            self.applied += len(take)
            ring = np.concatenate([self.ring, new])
            items = [*self.items, *(s.item_id for s in kept)]
            order = np.lexsort((ring["hash"], ring["ts"]))[-max_len:]
            self.ring = ring[order]
            self.items = [items[i] for i in order]
        return outcomes

    def interactions_bytes(self) -> bytes:
        """What the user did: the buffer, the applied count and the watermarks. Unlike the views,
        these do not depend on how a user's events on different topics interleaved on arrival (Kafka
        orders a partition, not topics), so any two runs over the same input must agree on them."""
        marks = b"".join(_WATERMARK.pack(s, p, o) for (s, p), o in sorted(self.watermarks.items()))
        return self.ring.tobytes() + "\x1f".join(self.items).encode() + self.applied.to_bytes(8, "little") + marks

    def to_bytes(self) -> bytes:
        v = self.views
        parts = [
            _HEADER.pack(FORMAT_VERSION, len(self.ring), len(self.watermarks), self.applied, self.skipped, v.last_ts),
            self.ring.tobytes(),
            "\x1f".join(self.items).encode(),
            b"\x00",
            *(_WATERMARK.pack(s, p, o) for (s, p), o in sorted(self.watermarks.items())),
            v.log_w.astype("<f8").tobytes(),
            v.count.astype("<u4").tobytes(),
            v.mean.astype("<f4").tobytes(),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes, n_views: int, dim: int) -> UserState:
        version, n, n_wm, applied, skipped, last_ts = _HEADER.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise ValueError(f"user state format {version}, expected {FORMAT_VERSION}")
        pos = _HEADER.size
        ring = np.frombuffer(raw, RING, n, pos).copy()
        pos += n * RING.itemsize
        end = raw.index(b"\x00", pos)
        items = raw[pos:end].decode().split("\x1f") if n else []
        pos = end + 1
        watermarks = {}
        for _ in range(n_wm):
            s, p, o = _WATERMARK.unpack_from(raw, pos)
            watermarks[(s, p)] = o
            pos += _WATERMARK.size
        log_w = np.frombuffer(raw, "<f8", n_views, pos).copy()
        pos += 8 * n_views
        count = np.frombuffer(raw, "<u4", n_views, pos).astype(np.int64)
        pos += 4 * n_views
        mean = np.frombuffer(raw, "<f4", n_views * dim, pos).reshape(n_views, dim).copy()
        return cls(ring, items, ViewState(mean, log_w, count, last_ts), watermarks, applied, skipped)
