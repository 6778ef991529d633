"""The linger after a micro-batch (pure logic: no broker, no clock)."""

import pytest

from streams.core.batching import Linger


def linger(target: int = 128, max_wait_s: float = 0.25) -> Linger:
    return Linger(target, max_wait_s, within_s=0.02)


def test_waits_for_what_its_rate_needs_to_reach_the_target() -> None:
    lg = linger(max_wait_s=1.0)
    assert lg.pause(100, started=10.0, now=10.05) == 0.0  # the first batch: no rate known yet
    # 64 events in 0.5 s (128/s): the next batch needs 1 s to gather 128, of which processing took
    # 0.1 s and Faust's take waits 0.02 s
    assert lg.pause(64, started=10.5, now=10.6) == pytest.approx(1.0 - 0.1 - 0.02)


def test_a_batch_at_the_target_or_over_never_lingers() -> None:
    lg = linger()
    lg.pause(10, started=0.0, now=0.01)
    assert lg.pause(128, started=5.0, now=5.1) == 0.0
    assert lg.pause(256, started=5.2, now=5.3) == 0.0


def test_the_linger_is_bounded_and_never_negative() -> None:
    lg = linger(max_wait_s=0.25)
    lg.pause(1, started=0.0, now=0.0)
    assert lg.pause(1, started=60.0, now=60.0) == 0.25  # one event a minute: at most the longest wait
    # 120 events in 0.2 s (600/s): 128 come within the processing time already
    assert lg.pause(120, started=60.2, now=60.4) == 0.0


def test_target_zero_takes_what_has_come_in() -> None:
    lg = linger(target=0)
    assert [lg.pause(1, started=t, now=t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
