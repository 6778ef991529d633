"""Every offset of a partition reaches the agent, in order; where one does not, it is fetched again.

Faust can lose records it has already fetched: after a rebalance's recovery it resumes the stream
partitions, seeks them to their committed offsets, then resumes flow control, which clears every
stream buffer; what its fetcher dispatched in between is dropped, and its drain, seeing the next
offsets skip, marks the dropped ones acknowledged. A user's state keeps a per-partition offset
watermark, so a lost record is lost for good once a later record of its partition is applied. The
agent therefore checks continuity itself (docs/decisions/0005-architecture-and-layers.md has the
takeover runs that showed the loss):

* a record past the next offset the agent expects of its partition (a gap) is not applied; the
  partition is fetched again from the expected offset, along with everything after it;
* a partition whose fetch position is past the next expected offset and that has not moved for
  `STALL_S` (fetched records that never arrived) is fetched again from the expected offset.

Not every offset holds a record the agent can see. On Apache Kafka offsets skip legitimately:
transaction markers (control records, never delivered), records deleted before the next expected
offset (retention, DeleteRecords: the fetch resets to the log start), records removed by compaction.
So before a gap or a stall is taken for a loss, the broker is asked which offsets between the
expectation and the record that came (or the fetch position) hold records (`admin.present_offsets`,
a plain consumer of its own); offsets that hold none are passed over and counted
(iu_offsets_skipped_total), and only a range with a record in it is fetched again.

Records offered again (offset below the expectation) pass: the state's watermarks skip them.
Each partition is committed at its expectation (`committable`): never past it, so that a record
lost before the agent and not yet fetched again is fetched again after a crash, too.

The expectation of a partition is anchored where its fetching restarts after each rebalance (the
offset the seek to committed offsets sought, streams/kafka/faust_compat.py), not at the first record
that arrives, nor at the position read after the seek (the fetcher may have moved it on already).
Faust goes on dispatching what is left of a batch fetched before the seek, and then drops re-fetched
records whose offset is below the last one it dispatched: an expectation taken from the first
arrival would take the hole for the start. A partition the worker keeps through a rebalance keeps
its expectation: with eager rebalancing no other worker can have moved it on.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from faust.types import TP

from streams.core.batch import Record

STALL_S = 10.0
IDLE_S = 2.0  # no record processed for this long: the agent is not working through a backlog


@dataclass(frozen=True)
class Present:
    """The offsets in [`low`, `high`) of one partition that hold records, as the broker told."""

    low: int
    high: int
    offsets: tuple[int, ...]  # sorted

    def empty_between(self, start: int, end: int) -> bool:
        """No record in [start, end), which lies inside what was asked."""
        if not (self.low <= start and end <= self.high):
            return False
        k = bisect.bisect_left(self.offsets, start)
        return k == len(self.offsets) or self.offsets[k] >= end


@dataclass
class Admission:
    records: list[Record]  # to process now, in order
    refetch: dict[TP, int]  # partitions to fetch again, from the offset given
    skipped: dict[TP, int] = field(default_factory=dict)  # offsets passed over that hold no record
    ahead: dict[TP, int] = field(default_factory=dict)  # per refetched partition: the highest offset that came

    def gaps(self) -> dict[TP, tuple[int, int]]:
        """What to ask the broker about each refetched partition: [expected, highest offset that came]."""
        return {tp: (want, self.ahead[tp] + 1) for tp, want in self.refetch.items()}


@dataclass
class Continuity:
    expected: dict[TP, int] = field(default_factory=dict)  # next offset the agent should see
    moved_at: dict[TP, float] = field(default_factory=dict)  # when `expected` last moved (or a refetch began)
    progressed_at: float = float("-inf")  # when the agent last processed a record of any partition

    def admit(self, records: Sequence[Record], present: Mapping[TP, Present] | None = None) -> Admission:
        """The records to process now, in order, and the partitions to fetch again (from the offset
        given): those in which a record came past the next expected offset with a record between
        (any offset may, unless `present` says otherwise); none of their records from there on is
        admitted. Offsets that `present` shows hold no record are passed over and counted."""
        nxt = dict(self.expected)
        out = Admission([], {})
        for r in records:
            tp = TP(r.topic, r.partition)
            if tp in out.refetch:
                out.ahead[tp] = max(out.ahead[tp], r.offset)
                continue
            want = nxt.get(tp)
            if want is not None and r.offset > want:
                known = (present or {}).get(tp)
                if known is None or not known.empty_between(want, r.offset):
                    out.refetch[tp], out.ahead[tp] = want, r.offset
                    continue
                out.skipped[tp] = out.skipped.get(tp, 0) + r.offset - want
            out.records.append(r)
            nxt[tp] = r.offset + 1 if want is None else max(want, r.offset + 1)
        return out

    def skip(self, tp: TP, to: int, now: float) -> int:
        """`tp`'s offsets from the expectation up to `to` hold no record: expect `to` next. How many."""
        want = self.expected.get(tp)
        if want is None or to <= want:
            return 0
        self.expected[tp], self.moved_at[tp] = to, now
        return to - want

    def anchor(self, positions: Mapping[TP, int], now: float) -> None:
        """After a rebalance's seek: `positions` is every assigned partition with its fetch position.
        Partitions no longer assigned are forgotten (another worker may move them on)."""
        self.expected = {tp: self.expected.get(tp, pos) for tp, pos in positions.items()}
        self.moved_at = {tp: self.moved_at.get(tp, now) for tp in positions}

    def committable(self, tps: Iterable[TP], offsets: Mapping[TP, int]) -> dict[TP, int]:
        """What to commit of `tps`, given what Faust would (`offsets`): each anchored partition at
        its next expected offset, where every record below was processed, in order, or holds none.
        Not past it: a record past it may have been acknowledged without being processed (a gap's,
        or one Faust took for skipped), and a commit past it would lose that record to a crash. Not
        short of it either: Faust commits only the first run of consecutive offsets it saw, and
        holds a partition back for good where offsets skip between two of its fetches (a
        transaction marker, deleted records). Partitions not anchored pass as Faust has them."""
        return {**offsets, **{tp: self.expected[tp] for tp in tps if tp in self.expected}}

    def processed(self, records: Iterable[Record], now: float) -> None:
        """Records applied; only anchored partitions move (one revoked meanwhile stays forgotten)."""
        self.progressed_at = now
        for r in records:
            tp = TP(r.topic, r.partition)
            if tp in self.expected and r.offset >= self.expected[tp]:
                self.expected[tp] = r.offset + 1
                self.moved_at[tp] = now

    def stalled(self, positions: Mapping[TP, int], now: float) -> dict[TP, int]:
        """Partitions fetched past their next expected offset that have not moved for `STALL_S`, with
        the offset to fetch them again from; each is given another `STALL_S` before it is named again.
        A partition found caught up restarts its clock: records that arrive after a quiet spell are
        not stuck just because the partition was quiet (that false alarm followed every rebalance
        that kept an idle partition). None is named while the agent works through a backlog (it
        processed records in the last `IDLE_S`): a partition's fetched records may wait behind
        others' in Faust's buffers for longer than `STALL_S`, and fetching them again would offer
        them twice (docs/decisions/0001-production-stack.md, item 11);
        records lost for good are still named once the backlog is worked off, and a loss followed
        by more records of its partition shows as a gap at once."""
        found: dict[TP, int] = {}
        busy = now - self.progressed_at < IDLE_S
        for tp, want in self.expected.items():
            if positions.get(tp, want) <= want:
                self.moved_at[tp] = now
            elif now - self.moved_at[tp] >= STALL_S and not busy:
                found[tp] = want
                self.moved_at[tp] = now
        return found
