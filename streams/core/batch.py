"""What one micro-batch is made of and what it gives: consumed records, dead letters, accepted events,
emitted lists. Plain data, shared by the processor, the monitor and the Kafka side."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from models.data.contract import (
    DEAD_LETTER_KEY_BYTES,
    DEAD_LETTER_VALUE_BYTES,
    DETAIL_HEADER,
    REASON_HEADER,
    SOURCE_HEADERS,
)
from streams.core.decode import Reason
from streams.core.state import Outcome


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed message, with where it came from (dead letters and watermarks need it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int




@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    detail: str

    @property
    def key(self) -> bytes | None:
        return None if self.record.key is None else self.record.key[:DEAD_LETTER_KEY_BYTES]

    @property
    def value(self) -> bytes:
        return self.record.value[:DEAD_LETTER_VALUE_BYTES]

    def headers(self) -> list[tuple[str, bytes]]:
        """Why and where from; for a record cut to fit, its whole size and SHA-256 (key and value)."""
        r = self.record
        cut: list[tuple[str, bytes]] = []
        for part, data, kept in (("key", r.key or b"", self.key or b""), ("value", r.value, self.value)):
            if len(data) > len(kept):
                cut += [(f"iu.original_{part}_size", str(len(data)).encode()),
                        (f"iu.original_{part}_sha256", hashlib.sha256(data).hexdigest().encode())]
        source = zip(SOURCE_HEADERS, (r.topic, str(r.partition), str(r.offset)), strict=True)
        return [(REASON_HEADER, self.reason.value.encode()), (DETAIL_HEADER, self.detail.encode()),
                *((name, value.encode()) for name, value in source), *cut]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event and what applying it did; the online evaluation replays these in order."""

    user_id: str
    scenario: str
    item_id: str
    action: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Emission:
    """A recommendation list as emitted, with what the monitor needs beside the JSON."""

    user_id: str
    scenario: str
    items: list[str]
    seen: frozenset[str]  # the user's recent items, filtered out of the list
    fused: np.ndarray
    latency_s: float  # record timestamp → emitted
    challenger: list[str] | None = None  # the shadow model's list for the same user and moment, if one runs


@dataclass
class BatchResult:
    states: dict[str, bytes] = field(default_factory=dict)  # user id -> new state, for users whose state changed
    recommendations: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, JSON)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    emitted: list[Emission] = field(default_factory=list)
    withheld: int = 0  # users whose list was not emitted: Milvus was down
    challenger: str = ""  # the version of the shadow model that made the emissions' challenger lists

    @property
    def outcomes(self) -> Counter[str]:
        """Events by outcome (applied, late, duplicate, redelivered, dead_letter:<reason>)."""
        return Counter([a.outcome.value for a in self.accepted] +
                       [f"dead_letter:{d.reason.value}" for d in self.dead_letters])


@dataclass(frozen=True, slots=True)
class Ranked:
    items: list[tuple[str, float]]
    fused: np.ndarray
    weights: np.ndarray
