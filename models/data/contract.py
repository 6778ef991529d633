"""The event and catalog contract shared by data sets, the model and the stream.

One definition keeps offline training and online updating in agreement about what an
action or a scenario is; the stream validates incoming JSON against the same names.
"""

from __future__ import annotations

import csv
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
