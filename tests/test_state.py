"""Per-user state: idempotent application, order-independent ring, exact byte round trip; and the re-rank."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.views import ViewLayout
from streams.rank import rerank
from streams.state import Outcome, Step, UserState

LAYOUT = ViewLayout.build(("home", "search", "video"), 24.0, 180.0)
DIM, L = 8, 5
VECS = np.random.default_rng(0).normal(size=(20, DIM)).astype(np.float32)


def apply(st_: UserState, n: int, ts: int, topic: int = 1, partition: int = 0, offset: int | None = None) -> Outcome:
    return st_.apply(LAYOUT, L, step(n, ts, topic, partition, offset), VECS[n % 20])


def step(n: int, ts: int, topic: int = 1, partition: int = 0, offset: int | None = None) -> Step:
    return Step(f"e{n}", f"i{n % 20}", 1 + n % 5, 1 + n % 3, ts, topic, partition, n if offset is None else offset)


def test_redelivered_and_duplicate_events_are_skipped():
    s = UserState.empty(LAYOUT.n, DIM)
    assert apply(s, 1, 1000) == Outcome.APPLIED
    assert apply(s, 1, 1000) == Outcome.REDELIVERED  # same offset
    assert apply(s, 1, 1000, offset=7) == Outcome.DUPLICATE  # same event id, new offset
    assert apply(s, 2, 500, offset=8) == Outcome.LATE
    assert (s.applied, s.skipped) == (2, 2)


def test_a_micro_batch_ends_where_event_by_event_ends():
    rng = np.random.default_rng(4)
    steps = [step(n, 1000 * n + int(rng.integers(-3000, 3000)), partition=n % 2) for n in range(30)]
    steps += [steps[3], step(28, 28_000, offset=99)]  # a redelivery and a duplicate of a recent event, both in it
    one, batch = UserState.empty(LAYOUT.n, DIM), UserState.empty(LAYOUT.n, DIM)
    expected = [one.apply(LAYOUT, L, s, VECS[int(s.event_id[1:]) % 20]) for s in steps]
    got = batch.apply_many(LAYOUT, L, steps, VECS[[int(s.event_id[1:]) % 20 for s in steps]])
    assert got == expected and Outcome.LATE in got and got[-2:] == [Outcome.REDELIVERED, Outcome.DUPLICATE]
    assert batch.interactions_bytes() == one.interactions_bytes() and batch.skipped == one.skipped == 2
    np.testing.assert_allclose(batch.views.mean, one.views.mean, atol=1e-5)


def test_bytes_round_trip_exactly():
    s = UserState.empty(LAYOUT.n, DIM)
    for n in range(12):
        apply(s, n, 1000 * n, topic=1 + n % 2, partition=n % 3)
    back = UserState.from_bytes(s.to_bytes(), LAYOUT.n, DIM)
    assert back.to_bytes() == s.to_bytes()
    assert back.items == s.items and back.watermarks == s.watermarks and len(back.items) == L
    np.testing.assert_array_equal(back.views.mean, s.views.mean)


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(12))))
def test_ring_is_the_last_l_by_time_whatever_the_arrival_order(order):
    s = UserState.empty(LAYOUT.n, DIM)
    for k, n in enumerate(order):
        apply(s, n, 1000 * n, offset=k)
    assert s.items == [f"i{n}" for n in range(12 - L, 12)]
    assert s.applied == 12


def test_rerank_filters_seen_items_and_diversifies():
    vecs = {"a": np.array([1.0, 0]), "b": np.array([0.99, 0.01]), "c": np.array([0.0, 1]), "d": np.array([1.0, 0])}
    cands = [("d", 4.0), ("a", 3.0), ("b", 2.9), ("c", 1.0)]
    assert [i for i, _ in rerank(cands, {"d"}, vecs, 2, 0.0)] == ["a", "b"]
    assert [i for i, _ in rerank(cands, {"d"}, vecs, 2, 0.5)] == ["a", "c"]
