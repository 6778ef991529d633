"""How long a worker lingers after a micro-batch so that the next one is big enough to be cheap.

Each micro-batch pays fixed costs whatever its size: one encoder forward, one Milvus search and
upsert, one wait for the broker's acknowledgement. When several workers share a load, each one's
batches shrink with its share, and CPU per event grows with the worker count. Lingering for the
time the worker's own rate needs to gather `target` events keeps batches, and CPU per event, about
the same however many workers share the load, at a bounded cost in latency (`max_wait_s`): dynamic
batching as inference servers do it (a preferred batch size and a longest queue delay).

Faust's `take_events` yields what came in within a fixed time; events that arrive while a batch is
processed, or while the worker lingers, wait in its stream buffer and make up the next batch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Linger:
    target: int  # events a batch should hold; 0: never linger
    max_wait_s: float  # longest linger after one batch
    within_s: float  # what Faust's take waits anyway before it yields a batch
    _last_start: float | None = None

    def pause(self, events: int, started: float, now: float) -> float:
        """Seconds to wait before taking the next batch, given that this one held `events` events
        and was yielded at `started` (monotonic seconds), and it is now `now`.

        The rate is this batch's events over the time since the previous batch was yielded; the next
        batch gathers for the time this one took to process, the linger and Faust's own wait."""
        previous, self._last_start = self._last_start, started
        if not self.target or previous is None or events >= self.target or started <= previous:
            return 0.0
        rate = events / (started - previous)
        gather = self.target / rate - (now - started) - self.within_s
        return min(max(gather, 0.0), self.max_wait_s)
