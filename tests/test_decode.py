"""Event decoding: every bad input gets a reason, never an exception; good input round-trips."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.data.contract import MAX_ID_BYTES, MAX_TITLE_BYTES, Event, Item
from streams.core.decode import CatalogRecord, Reason, Rejected, decode_event, decode_item

SCENS = ("home", "search", "video")
NOW = 1_800_000_000_000
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "click", "scenario": "home",
        "ts": 1_700_000_000_000}


def dec(obj: object) -> Event | Rejected:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return decode_event(raw, SCENS, now_ms=NOW)


def test_valid_event_decodes():
    assert dec(GOOD) == Event("e1", "u1", "i1", "click", "home", 1_700_000_000_000)
    assert dec({**GOOD, "user_id": 196, "context": {"page": 2}}).user_id == "196"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"\xff\xfe", Reason.MALFORMED_JSON),
        (b"[" * 100_000, Reason.MALFORMED_JSON),
        ([1, 2], Reason.NOT_AN_OBJECT),
        ({k: v for k, v in GOOD.items() if k != "ts"}, Reason.MISSING_FIELD),
        ({**GOOD, "user_id": None}, Reason.WRONG_TYPE),
        ({**GOOD, "user_id": True}, Reason.WRONG_TYPE),
        ({**GOOD, "item_id": 1.5}, Reason.WRONG_TYPE),
        ({**GOOD, "ts": "1700000000000"}, Reason.WRONG_TYPE),
        ({**GOOD, "ts": 1.7e12}, Reason.WRONG_TYPE),
        ({**GOOD, "action": 3}, Reason.WRONG_TYPE),
        ({**GOOD, "context": [1]}, Reason.WRONG_TYPE),
        ({**GOOD, "event_id": ""}, Reason.BAD_VALUE),
        ({**GOOD, "user_id": "x" * 10_000}, Reason.BAD_VALUE),
        ({**GOOD, "ts": -5}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": NOW + 10 * 86_400_000}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "action": "teleport"}, Reason.UNKNOWN_ACTION),
        ({**GOOD, "scenario": "mars"}, Reason.UNKNOWN_SCENARIO),
    ],
)
def test_each_bad_input_has_its_reason(raw, reason):
    r = dec(raw)
    assert isinstance(r, Rejected) and r.reason == reason, r


def test_nan_timestamp_is_rejected():
    r = decode_event(b'{"event_id":"e","user_id":"u","item_id":"i","action":"click","scenario":"home","ts":NaN}',
                     SCENS, now_ms=NOW)
    assert isinstance(r, Rejected) and r.reason == Reason.WRONG_TYPE


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (b"[1]", Reason.NOT_AN_OBJECT),
        ({"title": "x"}, Reason.MISSING_FIELD),
        ({"item_id": "i", "title": 3}, Reason.WRONG_TYPE),
        ({"item_id": "i", "title": "t", "categories": "Drama"}, Reason.WRONG_TYPE),
        ({"item_id": "電" * 90, "title": "t"}, Reason.BAD_VALUE),  # 90 characters, 270 bytes
        ({"item_id": "i", "title": "bad \ud800 half"}, Reason.BAD_VALUE),  # a lone surrogate: not UTF-8
        ({"item_id": "i", "title": "t", "categories": ["\udfff"]}, Reason.BAD_VALUE),
    ],
)
def test_bad_catalog_records_are_rejected_with_a_reason(obj, reason):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    assert decode_item(raw) == Rejected(reason, decode_item(raw).detail)


def test_catalog_record_decodes():
    raw = json.dumps({"item_id": 7, "title": "Heat (1995)", "categories": ["Action", "Crime"]}).encode()
    assert decode_item(raw) == CatalogRecord(Item("7", "Heat (1995)", ("Action", "Crime")), clipped=False)


@pytest.mark.parametrize("char", ["a", "ü", "電", "🎬"])  # 1, 2, 3 and 4 bytes in UTF-8
def test_long_titles_are_clipped_to_their_byte_limit_at_a_character_boundary(char):
    title = char * 2000
    got = decode_item(json.dumps({"item_id": "i", "title": title}).encode())
    assert isinstance(got, CatalogRecord) and got.clipped
    size = len(got.item.title.encode())
    assert MAX_TITLE_BYTES - len(char.encode()) < size <= MAX_TITLE_BYTES
    assert title.startswith(got.item.title)


def test_ids_are_limited_in_bytes_not_characters():
    fits, over = "電" * (MAX_ID_BYTES // 3), "電" * (MAX_ID_BYTES // 3 + 1)
    assert dec({**GOOD, "user_id": fits}).user_id == fits
    assert dec({**GOOD, "user_id": over}).reason == Reason.BAD_VALUE
    assert dec({**GOOD, "item_id": over}).reason == Reason.BAD_VALUE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(raw):
    assert isinstance(decode_event(raw, SCENS, now_ms=NOW), Event | Rejected)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*GOOD, "context", "extra"]), json_values, max_size=8))
def test_random_field_values_never_raise(fields):
    r = dec({**GOOD, **fields})
    assert isinstance(r, Event | Rejected)
    if isinstance(r, Event):
        assert r.action in ("view", "click", "add_to_cart", "purchase", "like") and r.scenario in SCENS
