"""The wire and data contract: events, catalog items, recommendation records, dead-letter headers,
and the limits on them, shared by data sets, the model, the producer, the worker, the readers and
the tests.

One definition keeps offline training and online updating in agreement about what an action or a
scenario is; the stream validates incoming JSON against the same names and limits.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ACTIONS: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "like")
DEFAULT_SCENARIOS: tuple[str, ...] = ("home", "search", "video")
EVENT_FIELDS: tuple[str, ...] = ("event_id", "user_id", "item_id", "action", "scenario", "ts")
ITEM_FIELDS: tuple[str, ...] = ("item_id", "title", "categories")
CATEGORY_SEPARATOR = "|"
# Limits in UTF-8 bytes, as Milvus counts its VARCHAR fields (a CJK character is 3 bytes, an emoji 4)
MAX_ID_BYTES = 256  # event, user and item ids
MAX_TITLE_BYTES = 1024  # longer titles are clipped at a character boundary
# A dead letter must fit in one produce request (Faust's producer sends at most 1,000,000 bytes, a
# broker's default limit is about 1 MiB): a longer key or value is cut, its size and SHA-256 in headers.
DEAD_LETTER_KEY_BYTES = 1024
DEAD_LETTER_VALUE_BYTES = 512 * 1024
# Dead-letter headers: why, where from; `original_{key,value}_{size,sha256}` for a record cut to fit
REASON_HEADER, DETAIL_HEADER = "iu.reason", "iu.detail"
SOURCE_HEADERS = ("iu.topic", "iu.partition", "iu.offset")
REROUTED_HEADER = "iu.rerouted_from"  # on an event produced again to its key's partition: "partition:offset"


def clip_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes in UTF-8."""
    return text.encode()[:limit].decode(errors="ignore")  # a cut character's first bytes are dropped


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    action: str
    scenario: str
    ts: int  # epoch milliseconds


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    categories: tuple[str, ...]

    @property
    def text(self) -> str:
        """The text the cold-start encoder sees: title plus categories."""
        cats = ", ".join(self.categories)
        return f"{self.title}. {cats}" if cats else self.title


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One record of the recommendations topic (keyed by user id): the top-k list emitted after an event."""

    user_id: str
    scenario: str
    items: tuple[tuple[str, float], ...]  # (item id, score), best first
    model_version: str
    trigger_event_id: str  # the event that refreshed the list
    event_ts: int  # that event's own time, epoch ms
    ingest_ts: int  # its Kafka record timestamp (the producer's send)
    emitted_ts: int  # when the list was produced

    def to_json(self) -> bytes:
        return json.dumps({
            "user_id": self.user_id, "scenario": self.scenario,
            "items": [{"item_id": i, "score": round(s, 5)} for i, s in self.items],
            "model_version": self.model_version, "trigger_event_id": self.trigger_event_id,
            "event_ts": self.event_ts, "ingest_ts": self.ingest_ts, "emitted_ts": self.emitted_ts,
        }).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Recommendation:
        r = json.loads(raw)
        return cls(r["user_id"], r["scenario"], tuple((i["item_id"], i["score"]) for i in r["items"]),
                   r["model_version"], r["trigger_event_id"], r["event_ts"], r["ingest_ts"], r["emitted_ts"])

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.items)

    @property
    def latency_ms(self) -> int:
        """Kafka record timestamp of the triggering event → the list emitted."""
        return self.emitted_ts - self.ingest_ts


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _read_csv(path: Path, header: tuple[str, ...]) -> list[list[str]]:
    with path.open(newline="") as f:
        r = csv.reader(f)
        found = tuple(next(r, ()))
        if found != header:
            raise ValueError(f"{path}: expected columns {header}, got {found}")
        return list(r)


def write_events(path: Path, events: list[Event]) -> None:
    _write_csv(path, EVENT_FIELDS, ((e.event_id, e.user_id, e.item_id, e.action, e.scenario, e.ts) for e in events))


def read_events(path: Path) -> list[Event]:
    return [Event(a, b, c, d, e, int(t)) for a, b, c, d, e, t in _read_csv(path, EVENT_FIELDS)]


def write_items(path: Path, items: list[Item]) -> None:
    _write_csv(path, ITEM_FIELDS, ((it.item_id, it.title, CATEGORY_SEPARATOR.join(it.categories)) for it in items))


def read_items(path: Path) -> list[Item]:
    return [
        Item(i, t, tuple(c for c in cats.split(CATEGORY_SEPARATOR) if c))
        for i, t, cats in _read_csv(path, ITEM_FIELDS)
    ]
