"""Continuity (streams/continuity.py): pure bookkeeping, tested on hand-made records."""

from faust.types import TP

from streams.continuity import STALL_S, Continuity
from streams.processor import Record

A, B = TP("t", 0), TP("t", 1)


def rec(tp: TP, offset: int) -> Record:
    return Record(tp.topic, tp.partition, offset, b"u", b"{}", 0)


def test_first_records_set_the_expectation_and_in_order_records_pass():
    c = Continuity()
    batch = [rec(A, 5), rec(B, 0), rec(A, 6), rec(B, 1)]
    kept, refetch = c.admit(batch)
    assert kept == batch and refetch == {}
    c.processed(kept, now=1.0)
    assert c.expected == {A: 7, B: 2}


def test_a_gap_holds_back_the_rest_of_its_partition_only():
    c = Continuity()
    c.processed([rec(A, 0), rec(B, 0)], now=0.0)
    kept, refetch = c.admit([rec(A, 1), rec(A, 4), rec(B, 1), rec(A, 2), rec(A, 5)])
    assert kept == [rec(A, 1), rec(B, 1)]
    assert refetch == {A: 2}


def test_records_offered_again_pass_and_do_not_move_the_expectation_back():
    c = Continuity()
    c.processed([rec(A, 9)], now=0.0)
    kept, refetch = c.admit([rec(A, 3), rec(A, 10)])
    assert kept == [rec(A, 3), rec(A, 10)] and refetch == {}
    c.processed(kept, now=1.0)
    assert c.expected[A] == 11


def test_a_partition_fetched_past_its_expectation_without_moving_is_stalled_once_per_period():
    c = Continuity()
    c.processed([rec(A, 0), rec(B, 0)], now=0.0)
    positions = {A: 50, B: 1}  # A's records 1..49 were fetched and never arrived; B is caught up
    assert c.stalled(positions, now=STALL_S - 1) == {}
    assert c.stalled(positions, now=STALL_S) == {A: 1}
    assert c.stalled(positions, now=STALL_S + 1) == {}  # given time for the refetch
    assert c.stalled(positions, now=2 * STALL_S) == {A: 1}


def test_a_moving_partition_is_not_stalled():
    c = Continuity()
    c.processed([rec(A, 0)], now=0.0)
    c.processed([rec(A, 1)], now=STALL_S - 1)
    assert c.stalled({A: 50}, now=STALL_S + 1) == {}


def test_revoked_partitions_start_afresh():
    c = Continuity()
    c.processed([rec(A, 0), rec(B, 0)], now=0.0)
    c.forget([A])
    kept, refetch = c.admit([rec(A, 40)])  # another worker moved A on meanwhile
    assert kept == [rec(A, 40)] and refetch == {}
    assert c.stalled({A: 100, B: 1}, now=STALL_S) == {}
