"""Hostile input through a running worker, on each stack: hypothesis-generated catalog records and
events (non-ASCII, huge, empty, nested, wrong types, ids with every punctuation mark) interleaved with
valid ones, then a burst of HTTP requests larger than the worker's queue. Each generated record is
valid by construction, or broken in one known way with the dead-letter reason that way has."""

from __future__ import annotations

import json
import string
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models.data.contract import ACTIONS, DEAD_LETTER_VALUE_BYTES, MAX_ID_BYTES, MAX_TITLE_BYTES, Event, read_items
from streams.kafka.replay import event_messages, publish
from streams.kafka.topics import DEAD_LETTERS, ITEMS, events_topic
from streams.testing.supervise import WorkerProcess
from tests.replays import ML100K, ml100k, replay

T = TypeVar("T")
SCENARIOS = ("home", "search", "video")
TS = 880_000_000_000
CROWD = 12_000  # users in the table-read test
# ids: every ASCII punctuation mark, letters, digits, a space, and text from far beyond ASCII
ID_CHARS = st.sampled_from(string.punctuation + string.ascii_letters + string.digits + " ") | st.characters(
    codec="utf-8", categories=("L", "N", "P", "S"))
IDS = st.text(ID_CHARS, min_size=1, max_size=40).filter(lambda s: s.isprintable() and len(s.encode()) <= MAX_ID_BYTES)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)
NOT_STRINGS = JSON_VALUES.filter(lambda v: not isinstance(v, (str, int)) or isinstance(v, bool))
TOO_LONG = st.text(st.characters(codec="utf-8", categories=("L",)), min_size=MAX_ID_BYTES // 3 + 1,
                   max_size=MAX_ID_BYTES).filter(lambda s: len(s.encode()) > MAX_ID_BYTES)
NOT_JSON = st.binary(min_size=1, max_size=200).filter(lambda b: _not_json(b))


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def draw(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """`n` examples of `strategy`, the same in every run."""
    out: list[T] = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: T) -> None:
        out.append(x)

    collect()
    return out


def broken(field: str, values: st.SearchStrategy[Any], reason: str) -> st.SearchStrategy[tuple[str, Any, str]]:
    return values.map(lambda v: (field, v, reason))


@st.composite
def events(draw_: Callable, item_ids: list[str]) -> tuple[dict, str | None]:
    """A valid event (with extra fields of any JSON) and None, or one broken in one way and its reason."""
    event = {"user_id": draw_(IDS), "item_id": draw_(st.sampled_from(item_ids)), "action": draw_(st.sampled_from(
        ACTIONS)), "scenario": draw_(st.sampled_from(SCENARIOS)), "ts": TS + draw_(st.integers(0, 10**9)),
        **draw_(st.dictionaries(st.sampled_from(["extra", "meta", "context"]), st.dictionaries(
            st.text(max_size=5), JSON_VALUES, max_size=3), max_size=2))}
    fault = draw_(st.none() | st.one_of(
        broken("user_id", NOT_STRINGS, "wrong_type"), broken("item_id", NOT_STRINGS, "wrong_type"),
        broken("user_id", TOO_LONG, "bad_value"), broken("item_id", st.just(""), "bad_value"),
        broken("user_id", st.text(st.characters(categories=("Cc",)), min_size=1, max_size=3), "bad_value"),
        broken("ts", JSON_VALUES.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)), "wrong_type"),
        broken("ts", st.integers(max_value=-1), "bad_timestamp"),
        broken("action", st.text(max_size=20).filter(lambda a: a not in ACTIONS), "unknown_action"),
        broken("scenario", st.text(max_size=20).filter(lambda s: s not in SCENARIOS), "unknown_scenario"),
        broken("item_id", IDS.map(lambda i: "no such item " + i[:30]), "unknown_item"),
        broken("scenario", st.just(None), "missing_field")))
    if fault is None:
        return event, None
    name, value, reason = fault
    if reason == "missing_field":
        del event[name]
    else:
        event[name] = value
    return event, reason


@st.composite
def catalog_records(draw_: Callable) -> tuple[bytes, str | None]:
    """A valid catalog record (hostile ids, titles past the byte limit) and None, or a broken one."""
    item = {"item_id": draw_(IDS), "title": draw_(st.text(max_size=MAX_TITLE_BYTES // 2) | st.text(
        st.characters(codec="utf-8", categories=("L",)), min_size=MAX_TITLE_BYTES // 3, max_size=MAX_TITLE_BYTES)),
        "categories": draw_(st.lists(st.text(max_size=20), max_size=4))}
    fault = draw_(st.none() | st.one_of(
        broken("item_id", TOO_LONG, "bad_value"), broken("item_id", NOT_STRINGS, "wrong_type"),
        broken("title", NOT_STRINGS.filter(lambda v: not isinstance(v, str)), "wrong_type"),
        broken("categories", JSON_VALUES.filter(lambda v: not isinstance(v, list)), "wrong_type"),
        broken("title", st.just(None), "missing_field")))
    if fault is None:
        return json.dumps(item).encode(), None
    name, value, reason = fault
    if reason == "missing_field":
        del item[name]
    else:
        item[name] = value
    return json.dumps(item).encode(), reason


WHOLE = [(b"", "malformed_json"), (b"[1, {}]", "not_an_object"), (b'"just a string"', "not_an_object"),
         (b'{"deep": ' * 50_000 + b"1" + b"}" * 50_000, "malformed_json"),  # too deep for the parser
         (json.dumps({"junk": "x" * 700_000}).encode(), "missing_field")]  # cut in its dead letter


def test_hostile_records_and_requests_through_a_running_worker(tiny_model, stack, tmp_path, consume_all):
    valid_events = ml100k(600)
    catalog = draw(catalog_records(), 150) + draw(NOT_JSON.map(lambda b: (b, "malformed_json")), 10)
    items = [json.loads(v)["item_id"] for v, reason in catalog if reason is None]  # ids repeat: updates
    hostile = draw(events(sorted(set(items)) + [e.item_id for e in valid_events[:50]]), 400)
    whole = WHOLE + draw(NOT_JSON.map(lambda b: (b, "malformed_json")), 10)
    dead = [(v, r) for v, r in catalog if r] + whole
    messages = list(event_messages(valid_events))
    for n, (event, reason) in enumerate(hostile):
        event["event_id"] = f"fuzz-{n}"
        value = json.dumps(event).encode()
        key = event["user_id"].encode() if isinstance(event.get("user_id"), str) and reason != "bad_value" else b"k"
        messages.insert(n * len(messages) // len(hostile), (events_topic(SCENARIOS[n % 3]), key, value))
        if reason:
            dead.append((value, reason))
    for n, (value, _) in enumerate(whole):
        messages.insert(n * 37 % len(messages), (events_topic("home"), b"whole", value))
    env = replay(stack, tiny_model, tmp_path, "hostile", [], IU_HTTP_QUEUE="2")
    prod = stack.producer()
    with WorkerProcess(env, tmp_path / "hostile.log") as worker:
        ml100k_items = len(read_items(ML100K / "items.csv"))
        applied_items = worker.wait_for(lambda s: s.get("items_in", 0) >= ml100k_items, 60,
                                        "the ml-100k catalog")["items_applied"]
        for value, _ in catalog:
            prod.produce(ITEMS, key=b"fuzz", value=value)
        assert prod.flush(30) == 0
        worker.wait_for(lambda s: s["items_applied"] >= applied_items + len(items), 120, "the fuzzed catalog")
        publish(prod, messages, progress=False)
        good = len(valid_events) + sum(r is None for _, r in hostile)
        stats = worker.wait_for(lambda s: s.get("events_in", 0) >= len(messages), 240, f"{len(messages)} records")
        assert stats.get("applied", 0) + stats.get("late", 0) == good, stats
        assert stats["items_applied"] - applied_items == len(items), stats

        # More requests than IU_HTTP_QUEUE at once: some wait their turn, the rest are told to retry.
        user = valid_events[0].user_id
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda _: worker.get(f"/users/{user}/recommendations"), range(96)))
        codes = Counter(a.get("http_status", 200) for a in answers)
        assert set(codes) == {200, 503} and all(a["retry_after"] == "1" for a in answers if "http_status" in a)
        assert worker.metric("iu_http_requests_rejected_total") == codes[503]
        assert worker.get("/health")["status"] == "ok" and worker.get(f"/users/{user}/recommendations")["items"]
    dlq = consume_all(stack.bootstrap, DEAD_LETTERS, lambda ms: len(ms) >= len(dead), timeout=120)
    got = Counter((m.value(), dict(m.headers())["iu.reason"].decode()) for m in dlq)
    assert got == Counter((v[:DEAD_LETTER_VALUE_BYTES], r) for v, r in dead)
    print(f"dead letters by reason: {dict(Counter(r for _, r in dead))}; HTTP answers: {dict(codes)}")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_whole_table_reads_leave_the_event_loop_free(tiny_model, stack, tmp_path):
    """With RocksDB each state is a read from disk. While `/state/digest` reads and hashes every user
    (and the gauges count them every 2 s), the worker's other requests are answered as usual: the
    reads run beside the event loop, not on it. (The loop does not depend on the broker.)"""
    events = [Event(f"crowd-{k}", f"crowd-{k}", str(k % 1000 + 1), "click", "home", TS + k)
              for k in range(CROWD)]
    env = replay(stack, tiny_model, tmp_path, "crowd", events, IU_STORE="rocksdb://")
    with WorkerProcess(env, tmp_path / "crowd.log") as worker:
        stats = worker.wait_for(lambda s: s.get("events_in", 0) >= CROWD, 300, f"{CROWD} events")
        assert stats.get("applied") == CROWD, stats
        answers: list[float] = []
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            digest = pool.submit(worker.get, "/state/digest", 120)
            while not digest.done():
                asked = time.monotonic()
                assert worker.get("/health")["status"] == "ok"
                answers.append(time.monotonic() - asked)
            took = time.monotonic() - started
            assert digest.result()["users"] == CROWD
    slowest = max(answers)
    print(f"digest of {CROWD} users: {took:.2f} s; {len(answers)} /health answers meanwhile, slowest "
          f"{slowest * 1000:.0f} ms")
    # on the loop: 1 or 2 answers, the slowest about `took`. Beside it: many, the slowest a fraction of it
    # (RocksDB's iterator holds up the loop's own table writes while the states are read out).
    assert len(answers) >= 5 and slowest < 0.6 * took, (took, sorted(answers)[-5:])
