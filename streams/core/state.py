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

from models.views import ViewLayout, ViewState, closed_form, effective_ts

FORMAT_VERSION = 3
RING = np.dtype([("ts", "<i8"), ("hash", "<u8"), ("action", "u1"), ("scen", "u1")])
HASH_BYTES = 6  # of an event id's hash: a false duplicate among the last 50 events is ~2e-13 per event
_HEADER_V1 = struct.Struct("<BHHIIq")  # version, ring length, watermark count, applied, skipped, views' last ts
_HEADER_V2 = struct.Struct("<BHHIIqB")  # the same, then the byte width of the ring's time deltas
_HEADER = struct.Struct("<BHHIIqBQ")  # the same, then the vector space of the views (`space_of`)
_WATERMARK = struct.Struct("<BHq")  # topic number, partition, offset
_ROUNDING_BITS = 13  # float32 mantissa bits float16 drops
_ROUNDING_MASK = np.uint32(0xFFFFFFFF ^ ((1 << _ROUNDING_BITS) - 1))


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
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=HASH_BYTES).digest(), "little")


@dataclass
class UserState:
    ring: np.ndarray  # RING records sorted by (ts, hash): the last L interactions
    items: list[str]  # item ids, aligned with `ring`
    views: ViewState
    watermarks: dict[tuple[int, int], int] = field(default_factory=dict)  # (topic, partition) -> offset
    applied: int = 0
    skipped: int = 0  # redelivered or duplicate events seen and not applied
    space: int = 0  # the model whose item vectors the views average (`space_of`); 0: not recorded (format 2)

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

    def reproject(self, layout: ViewLayout, space: int, known: np.ndarray, item_vecs: np.ndarray) -> None:
        """The views recomputed from the ring in another model's vector space (`item_vecs`: the vectors of
        the ring's items that model `known`s, in ring order): what a state written by one model becomes
        when another serves it. History older than the ring is left out; the ring is the record kept."""
        r = self.ring[known]
        cf = closed_form(layout, r["action"].astype(np.int64), r["scen"].astype(np.int64), r["ts"])
        t_ref = int(effective_ts(r["ts"])[-1]) if len(r) else self.views.last_ts
        log_w = cf.log_w - (self.views.last_ts - t_ref) / layout.tau_ms
        mean = (cf.weights.T @ item_vecs).astype(np.float32)
        self.views = ViewState(mean, log_w, cf.count.astype(np.int64), self.views.last_ts)
        self.space = space

    def interactions_bytes(self) -> bytes:
        """What the user did: the buffer, the applied count and the watermarks. Unlike the views,
        these do not depend on how a user's events on different topics interleaved on arrival (Kafka
        orders a partition, not topics), so any two runs over the same input must agree on them."""
        return (self.ring.tobytes() + "\x1f".join(self.items).encode() + self.applied.to_bytes(8, "little")
                + self._watermark_bytes())

    def _watermark_bytes(self) -> bytes:
        return b"".join(_WATERMARK.pack(s, p, o) for (s, p), o in sorted(self.watermarks.items()))

    def to_bytes(self) -> bytes:
        """Format 3, ~1.9 KB at L=50, d=64, 9 views (format 1 was ~3.5 KB): ring times as deltas in the
        fewest whole bytes that hold the largest, 6-byte event hashes, action and scenario in one byte,
        view means in float16 with stochastic rounding (see `_to_float16`); all else as before. Format 3
        is format 2 with the views' vector space in the header."""
        v, ring = self.views, self.ring
        deltas = np.diff(np.append(ring["ts"], v.last_ts)).astype("<u8")  # >= 0: sorted, none after last_ts
        width = max(1, (int(deltas.max(initial=0)).bit_length() + 7) // 8)
        if len(ring) and (ring["action"].max() > 15 or ring["scen"].max() > 15):
            raise ValueError("format 2 packs action and scenario indices into 4 bits each")
        parts = [
            _HEADER.pack(FORMAT_VERSION, len(ring), len(self.watermarks), self.applied, self.skipped, v.last_ts, width,
                         self.space),
            _low_bytes(deltas, width),
            _low_bytes(ring["hash"], HASH_BYTES),
            ((ring["action"] << 4) | ring["scen"]).astype("u1").tobytes(),
            "\x1f".join(self.items).encode(),
            b"\x00",
            self._watermark_bytes(),
            v.log_w.astype("<f8").tobytes(),
            v.count.astype("<u4").tobytes(),
            _to_float16(v.mean, self.applied).tobytes(),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes, n_views: int) -> UserState:
        """Formats 3, 2 and 1 (a changelog written before still recovers; it is rewritten as 3)."""
        version = raw[0]
        if version == 1:
            return _from_bytes_v1(raw, n_views)
        if version not in (2, FORMAT_VERSION):
            raise ValueError(f"user state format {version}, expected {FORMAT_VERSION}, 2 or 1")
        header = _HEADER if version == FORMAT_VERSION else _HEADER_V2
        _, n, n_wm, applied, skipped, last_ts, width, *space = header.unpack_from(raw)
        pos = header.size
        ring = np.zeros(n, RING)
        deltas = _from_low_bytes(raw, pos, n, width).astype(np.int64)
        ring["ts"] = last_ts - np.cumsum(deltas[::-1])[::-1]
        pos += n * width
        ring["hash"] = _from_low_bytes(raw, pos, n, HASH_BYTES)
        pos += n * HASH_BYTES
        packed = np.frombuffer(raw, "u1", n, pos)
        ring["action"], ring["scen"] = packed >> 4, packed & 15
        pos += n
        items, watermarks, views = _tail(raw, pos, n, n_wm, n_views, last_ts, "<f2")
        return cls(ring, items, views, watermarks, applied, skipped, space[0] if space else 0)


def space_of(model_version: str) -> int:
    """The nonzero 64-bit tag of a model's vector space that a state records."""
    return int.from_bytes(hashlib.blake2b(model_version.encode(), digest_size=8).digest(), "little") or 1


def events_applied(raw: bytes) -> int:
    """The applied count of a stored state (formats 1 to 3 share the header's first fields), read
    without decoding the rest: what a diagnosis of a changelog needs, record by record."""
    return _HEADER_V1.unpack_from(raw)[3]


def _low_bytes(values: np.ndarray, width: int) -> bytes:
    """The `width` low bytes of each unsigned 64-bit value, little-endian."""
    return values.astype("<u8").view("u1").reshape(-1, 8)[:, :width].tobytes()


def _from_low_bytes(raw: bytes, pos: int, n: int, width: int) -> np.ndarray:
    full = np.zeros((n, 8), "u1")
    full[:, :width] = np.frombuffer(raw, "u1", n * width, pos).reshape(n, width)
    return full.view("<u8").ravel()


def _to_float16(x: np.ndarray, seed: int) -> np.ndarray:
    """Stochastic rounding: round-to-nearest would drop an update smaller than half a float16 step,
    and a heavy user's long-term mean moves by ~1/n per event, so it would stop moving; random
    rounding is unbiased and lets it drift only by noise. Seeded by the state, so the bytes are a
    function of the state; a value already in float16 is unchanged (a decoded state re-encodes to
    the same bytes)."""
    bits = np.ascontiguousarray(x, "<f4").view("<u4")
    noise = np.random.default_rng(seed).integers(0, 1 << _ROUNDING_BITS, bits.shape, dtype=np.uint32)
    rounded = ((bits + noise) & _ROUNDING_MASK).view("<f4")
    return rounded.astype("<f2")


def _tail(raw: bytes, pos: int, n: int, n_wm: int, n_views: int, last_ts: int,
          mean_dtype: str) -> tuple[list[str], dict[tuple[int, int], int], ViewState]:
    """Items, watermarks and views: laid out alike in every format but for the means' precision. The
    means' width is what the bytes hold: a state written by a model of another width still decodes."""
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
    dim = (len(raw) - pos) // (np.dtype(mean_dtype).itemsize * n_views)
    mean = np.frombuffer(raw, mean_dtype, n_views * dim, pos).reshape(n_views, dim).astype(np.float32)
    return items, watermarks, ViewState(mean, log_w, count, last_ts)


def _from_bytes_v1(raw: bytes, n_views: int) -> UserState:
    _, n, n_wm, applied, skipped, last_ts = _HEADER_V1.unpack_from(raw)
    pos = _HEADER_V1.size
    ring = np.frombuffer(raw, RING, n, pos).copy()
    ring["hash"] &= np.uint64((1 << 8 * HASH_BYTES) - 1)  # as format 2 and event_hash keep them
    items, watermarks, views = _tail(raw, pos + n * RING.itemsize, n, n_wm, n_views, last_ts, "<f4")
    return UserState(ring, items, views, watermarks, applied, skipped)
