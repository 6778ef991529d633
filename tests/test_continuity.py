"""Continuity (streams/kafka/continuity.py): pure bookkeeping, tested on hand-made records."""

from faust.types import TP

from streams.core.batch import Record
from streams.kafka.continuity import IDLE_S, STALL_S, Continuity, Present

A, B = TP("t", 0), TP("t", 1)


def rec(tp: TP, offset: int) -> Record:
    return Record(tp.topic, tp.partition, offset, b"u", b"{}", 0)


def anchored(**positions: int) -> Continuity:
    c = Continuity()
    c.anchor({TP("t", int(p[1:])): o for p, o in positions.items()}, now=0.0)
    return c


def test_in_order_records_from_the_seek_position_pass():
    c = anchored(p0=5, p1=0)
    batch = [rec(A, 5), rec(B, 0), rec(A, 6), rec(B, 1)]
    admission = c.admit(batch)
    kept, refetch = admission.records, admission.refetch
    assert kept == batch and refetch == {}
    c.processed(kept, now=1.0)
    assert c.expected == {A: 7, B: 2}


def test_records_lost_before_the_first_arrival_after_a_seek_are_fetched_again():
    """The hole an expectation taken from the first arrival had: 5 and 6 never came."""
    c = anchored(p0=5)
    admission = c.admit([rec(A, 7), rec(A, 8)])
    kept, refetch = admission.records, admission.refetch
    assert kept == [] and refetch == {A: 5}


def test_a_partition_whose_first_records_never_arrive_is_stalled():
    c = anchored(p0=5)
    assert c.stalled({A: 20}, now=STALL_S) == {A: 5}


def test_a_gap_holds_back_the_rest_of_its_partition_only():
    c = anchored(p0=0, p1=0)
    c.processed([rec(A, 0), rec(B, 0)], now=0.0)
    admission = c.admit([rec(A, 1), rec(A, 4), rec(B, 1), rec(A, 2), rec(A, 5)])
    kept, refetch = admission.records, admission.refetch
    assert kept == [rec(A, 1), rec(B, 1)]
    assert refetch == {A: 2}


def test_records_offered_again_pass_and_do_not_move_the_expectation_back():
    c = anchored(p0=9)
    c.processed([rec(A, 9)], now=0.0)
    admission = c.admit([rec(A, 3), rec(A, 10)])
    kept, refetch = admission.records, admission.refetch
    assert kept == [rec(A, 3), rec(A, 10)] and refetch == {}
    c.processed(kept, now=1.0)
    assert c.expected[A] == 11


def test_a_partition_fetched_past_its_expectation_without_moving_is_stalled_once_per_period():
    c = anchored(p0=0, p1=0)
    c.processed([rec(A, 0), rec(B, 0)], now=0.0)
    positions = {A: 50, B: 1}  # A's records 1..49 were fetched and never arrived; B is caught up
    assert c.stalled(positions, now=STALL_S - 1) == {}
    assert c.stalled(positions, now=STALL_S) == {A: 1}
    assert c.stalled(positions, now=STALL_S + 1) == {}  # given time for the refetch
    assert c.stalled(positions, now=2 * STALL_S) == {A: 1}


def test_records_after_a_quiet_spell_are_given_the_full_period():
    c = anchored(p0=5)
    assert c.stalled({A: 5}, now=100.0) == {}  # caught up, long after the anchor
    assert c.stalled({A: 30}, now=101.0) == {}  # records just fetched: not stuck yet
    assert c.stalled({A: 30}, now=100.0 + STALL_S) == {A: 5}


def test_a_moving_partition_is_not_stalled():
    c = anchored(p0=0)
    c.processed([rec(A, 0)], now=0.0)
    c.processed([rec(A, 1)], now=STALL_S - 1)
    assert c.stalled({A: 50}, now=STALL_S + 1) == {}


def test_a_rebalance_keeps_kept_partitions_forgets_revoked_ones_and_anchors_new_ones():
    c = anchored(p0=0, p1=0)
    c.processed([rec(A, 0), rec(A, 1), rec(B, 0)], now=0.0)
    c.anchor({A: 0, TP("t", 2): 30}, now=1.0)  # A kept (sought back to its commit), B revoked, t:2 new
    assert c.expected == {A: 2, TP("t", 2): 30}
    c.processed([rec(B, 1)], now=2.0)  # a batch of B's finishing after the revoke
    assert B not in c.expected
    admission = c.admit([rec(A, 0), rec(A, 2), rec(B, 40)])  # A offered again; B unwatched now
    kept, refetch = admission.records, admission.refetch
    assert kept == [rec(A, 0), rec(A, 2), rec(B, 40)] and refetch == {}


def test_no_partition_is_committed_past_its_expectation():
    """What Faust would commit after counting records it lost as acknowledged: held where the
    agent's in-order processing stands; partitions never anchored (Faust's own topics) pass."""
    c = anchored(p0=5, p1=0)
    c.processed([rec(A, 5), rec(A, 6), rec(B, 0)], now=1.0)
    other = TP("leader", 0)
    assert c.committable([A, B, other], {A: 40, B: 1, other: 9}) == {A: 7, B: 1, other: 9}


def test_a_partition_faust_holds_back_is_committed_at_its_expectation():
    """Faust saw no run of consecutive offsets (a transaction marker fell between two fetches)."""
    c = anchored(p0=5)
    c.processed([rec(A, 6), rec(A, 8)], now=1.0)
    assert c.committable([A], {}) == {A: 9}


def test_offsets_that_hold_no_record_are_passed_over_and_counted():
    """Transaction markers at 6 and 9, records 7-8 and 10: the broker's answer says so."""
    c = anchored(p0=6)
    batch = [rec(A, 7), rec(A, 8), rec(A, 10)]
    first = c.admit(batch)
    assert first.records == [] and first.refetch == {A: 6} and first.gaps() == {A: (6, 11)}
    second = c.admit(batch, {A: Present(6, 11, (7, 8, 10))})
    assert second.records == batch and second.refetch == {} and second.skipped == {A: 2}


def test_a_gap_with_a_record_in_it_is_fetched_again_whatever_else_is_empty():
    c = anchored(p0=6)
    admission = c.admit([rec(A, 9), rec(A, 10)], {A: Present(6, 11, (8, 9, 10))})  # 8 exists: lost
    assert admission.records == [] and admission.refetch == {A: 6} and admission.skipped == {}


def test_an_answer_that_does_not_reach_the_record_is_no_proof_of_absence():
    c = anchored(p0=6)
    admission = c.admit([rec(A, 9)], {A: Present(6, 8, ())})  # read only as far as 8
    assert admission.refetch == {A: 6}


def test_a_skip_moves_the_expectation_forward_only():
    c = anchored(p0=6)
    assert c.skip(A, 9, now=1.0) == 3 and c.expected[A] == 9
    assert c.skip(A, 4, now=2.0) == 0 and c.expected[A] == 9
    assert c.skip(B, 4, now=2.0) == 0 and B not in c.expected


def test_no_stall_is_named_while_the_agent_works_through_a_backlog():
    """B's fetched records wait behind A's in Faust's buffers: not lost, only queued."""
    c = anchored(p0=0, p1=0)
    for t in range(1, int(STALL_S) + 5):
        c.processed([rec(A, t - 1)], now=float(t))
        assert c.stalled({A: t, B: 50}, now=float(t)) == {}
    assert c.stalled({A: 20, B: 50}, now=STALL_S + 4 + IDLE_S) == {B: 0}  # idle now: B's records are lost
