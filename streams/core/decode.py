"""Decoding event bytes into `Event`s, or into a dead letter with a reason.

Bad input must never crash a worker nor vanish: every rejection carries one of a fixed set of
reasons (a bounded label set for metrics) and a human-readable detail.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from enum import StrEnum

from models.data.contract import ACTIONS, EVENT_FIELDS, MAX_ID_BYTES, MAX_TITLE_BYTES, Event, Item, clip_utf8

MAX_FUTURE_MS = 86_400_000  # a day of clock skew is tolerated; beyond it the timestamp is wrong


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    BAD_TIMESTAMP = "bad_timestamp"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_SCENARIO = "unknown_scenario"
    UNKNOWN_ITEM = "unknown_item"
    ITEM_UNAVAILABLE = "item_unavailable"  # not known here and Milvus is down: valid, replay it from the DLQ
    KEY_MISMATCH = "key_mismatch"  # the message key is not the user id: the user's state would split


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str


def _ident(obj: dict, name: str) -> str | Rejected:
    """Ids are strings; integers are accepted and normalised, since many producers key by number."""
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        return Rejected(Reason.WRONG_TYPE, f"{name} must be a string, got {type(v).__name__}")
    s = str(v)
    if not s or not s.isprintable() or len(s.encode()) > MAX_ID_BYTES:  # printable: no lone surrogates
        return Rejected(Reason.BAD_VALUE, f"{name} must be printable characters, 1..{MAX_ID_BYTES} bytes in UTF-8")
    return s


# One decoder for every record: json.loads with an argument builds a new one per call. NaN and
# Infinity parse (to NaN) so that the type and value checks, not the parser, say what is wrong.
_JSON = json.JSONDecoder(parse_constant=lambda c: math.nan)


def _object(raw: bytes) -> dict | Rejected:
    try:
        obj = _JSON.decode(raw.decode())  # JSON exchanged between systems is UTF-8 (RFC 8259)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        return Rejected(Reason.MALFORMED_JSON, str(e)[:200])
    if not isinstance(obj, dict):
        return Rejected(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    return obj


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    item: Item
    clipped: bool  # the title was longer than MAX_TITLE_BYTES and was cut


def _text(s: str) -> bool:
    """Encodable as UTF-8 (JSON's \\ud800 escapes decode to lone surrogates, which are not)."""
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def decode_item(raw: bytes) -> CatalogRecord | Rejected:
    """A catalog record: item_id, title, optional categories (a list of strings)."""
    obj = _object(raw)
    if isinstance(obj, Rejected):
        return obj
    missing = [f for f in ("item_id", "title") if f not in obj]
    if missing:
        return Rejected(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    item_id = _ident(obj, "item_id")
    if isinstance(item_id, Rejected):
        return item_id
    cats = obj.get("categories", [])
    if not isinstance(obj["title"], str) or not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        return Rejected(Reason.WRONG_TYPE, "title must be a string and categories a list of strings")
    cats = cats[:50]
    if not all(map(_text, [obj["title"], *cats])):
        return Rejected(Reason.BAD_VALUE, "title and categories must be Unicode text (no lone surrogates)")
    title = clip_utf8(obj["title"], MAX_TITLE_BYTES)
    return CatalogRecord(Item(item_id, title, tuple(c[:100] for c in cats)), clipped=title != obj["title"])


def decode_event(
    raw: bytes,
    scenarios: tuple[str, ...],
    now_ms: int | None = None,
) -> Event | Rejected:
    """Shape and value checks only: whether the item exists is the catalog's call (streams/vectors/catalog.py),
    which may have to ask the vector store about items another worker registered."""
    obj = _object(raw)
    if isinstance(obj, Rejected):
        return obj
    missing = [f for f in EVENT_FIELDS if f not in obj]
    if missing:
        return Rejected(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    ids = {name: _ident(obj, name) for name in ("event_id", "user_id", "item_id")}
    bad = next((v for v in ids.values() if isinstance(v, Rejected)), None)
    if bad is not None:
        return bad
    for name in ("action", "scenario"):
        if not isinstance(obj[name], str):
            return Rejected(Reason.WRONG_TYPE, f"{name} must be a string, got {type(obj[name]).__name__}")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        return Rejected(Reason.WRONG_TYPE, f"ts must be an integer (epoch ms), got {type(ts).__name__}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts < 0 or ts > now + MAX_FUTURE_MS:
        return Rejected(Reason.BAD_TIMESTAMP, f"ts {ts} is negative or more than a day in the future")
    if obj["action"] not in ACTIONS:
        return Rejected(Reason.UNKNOWN_ACTION, f"action {obj['action'][:50]!r} is not one of {', '.join(ACTIONS)}")
    if obj["scenario"] not in scenarios:
        return Rejected(Reason.UNKNOWN_SCENARIO, f"scenario {obj['scenario'][:50]!r} is not one of {scenarios}")
    if "context" in obj and not isinstance(obj["context"], dict):
        return Rejected(Reason.WRONG_TYPE, "context must be a JSON object")
    return Event(ids["event_id"], ids["user_id"], ids["item_id"], obj["action"], obj["scenario"], ts)
