"""Pure logic of the online evaluation and the drift detectors (no broker, no model)."""

from __future__ import annotations

import numpy as np

from streams.monitoring.drift import DriftDetectors
from streams.monitoring.quality import OnlineQuality, Shadow, TopCounts
from streams.worker.shadow import promote_now, roll_back_now

SCENARIOS = ("home", "search")


def quality(capacity: int = 100) -> OnlineQuality:
    return OnlineQuality(SCENARIOS, k=2, window=4, capacity=capacity, max_seen=3)


def test_an_event_is_scored_only_against_lists_emitted_before_it():
    q = quality()
    assert q.trial("u", "home", "a") is None  # nothing emitted yet: no trial
    q.remember("u", "home", ["a", "b"], frozenset())
    assert q.trial("u", "home", "a") == {"ours": True, "popularity": False}
    assert q.trial("u", "search", "a") is None  # lists are per scenario
    assert q.summary() == {"trials": 1, "hit_rate_ours": 1.0, "hit_rate_popularity": 0.0}


def test_popularity_baseline_is_the_scenarios_top_items_minus_what_the_user_saw():
    q = quality()
    for item, n in (("x", 5), ("y", 4), ("z", 3), ("w", 1)):
        for _ in range(n):
            q.count("home", item)
    q.count("search", "w")
    q.remember("u", "home", ["a", "b"], frozenset({"x"}))
    assert q.trial("u", "home", "y") == {"ours": False, "popularity": True}
    assert q.trial("u", "home", "z") == {"ours": False, "popularity": True}
    assert q.trial("u", "home", "x") == {"ours": False, "popularity": False}  # seen items are left out of both lists
    assert abs(q.hit_rate("home", "popularity") - 2 / 3) < 1e-9


def test_a_challenger_is_scored_on_the_same_trials_and_compared_paired():
    q = quality()
    q.remember("u", "home", ["a"], frozenset(), ["b"])  # no shadow model yet: its list is not scored
    assert q.trial("u", "home", "b") == {"ours": False, "popularity": False}
    q.follow("v2")
    for n in range(40):  # the challenger hits 30 of 40, the champion 10, both on the same 40 trials
        ours, theirs = (["a"], ["b"]) if n < 30 else (["b"], ["a"])
        q.remember("u", "home", ours, frozenset(), theirs)
        assert q.trial("u", "home", "b")["challenger"] == (n < 30)
    assert (q.shadow.trials, q.shadow.hits_ours, q.shadow.hits_challenger) == (40, 10, 30)
    assert q.shadow.better(0.05) and not Shadow("v", 40, 20, 21, 10, 11).better(0.05)
    assert abs(Shadow("v", 4, 0, 3, 0, 3).p_value() - 0.25) < 1e-12  # 2 * (1/2)^3
    q.follow("v3")  # another challenger: counted afresh, lists the last one made are not its
    assert q.shadow.trials == 0 and "challenger" not in q.trial("u", "home", "b")


def test_top_counts_stay_the_largest_counts_in_order_as_they_grow():
    rng = np.random.default_rng(7)
    top = TopCounts(5)
    for step, item in enumerate(rng.zipf(1.3, 5000) % 300):  # skewed, with a long tail and many ties
        top.add(str(item))
        if step % 97 == 0 or step == 4999:
            counts = [top.counts[i] for i in top.top]
            assert counts == sorted(counts, reverse=True)
            assert len(set(top.top)) == len(top.top) == min(5, len(top.counts))
            assert sorted(top.counts.values(), reverse=True)[:5] == counts  # none outside counts more


def test_rolling_hit_rate_forgets_old_trials_and_memory_is_bounded():
    q = quality(capacity=2)
    q.remember("u", "home", ["a"], frozenset())
    for _ in range(4):
        q.trial("u", "home", "a")
    for _ in range(4):
        q.trial("u", "home", "miss")
    assert q.hit_rate("home", "ours") == 0.0  # window of 4: only the misses remain
    assert q.summary()["hit_rate_ours"] == 0.5  # the cumulative rate keeps everything
    q.remember("v", "home", ["a"], frozenset())
    q.remember("w", "home", ["a"], frozenset())
    assert len(q.lists) == 2 and q.trial("u", "home", "a") is None  # the oldest pair was evicted


def test_hit_rate_detector_sees_an_abrupt_drop_quickly_and_not_a_stationary_stream():
    rng = np.random.default_rng(0)
    d = DriftDetectors(SCENARIOS)
    found = [(n, det) for n in range(20_000)
             if (det := d.update("hit_rate", "home", float(rng.random() < (0.3 if n < 10_000 else 0.1))))]
    before = [n for n, _ in found if n < 10_000]
    after = [(n, det) for n, det in found if n >= 10_000]
    assert len(before) <= 1
    first, det = after[0]
    assert first - 10_000 < 1_000 and det.direction == "down" and det.after < det.before


def test_latency_detector_alarms_on_a_sustained_rise_only():
    rng = np.random.default_rng(1)
    d = DriftDetectors(SCENARIOS)
    steady = [d.update("latency", "all", 0.2 + 0.05 * rng.random()) for _ in range(500)]
    assert not any(steady)
    risen = [(n, det) for n in range(200) if (det := d.update("latency", "all", 1.0 + 0.05 * rng.random()))]
    assert risen and risen[0][0] < 20 and risen[0][1].direction == "up"


def test_promotion_and_rollback_rules():
    better = Shadow("v2", trials=200, hits_ours=20, hits_challenger=45, ours_only=5, challenger_only=30)
    assert promote_now(better, 200) and not promote_now(better, 201) and not promote_now(better, 0)
    assert not promote_now(Shadow("v2", 500, 50, 52, 20, 22), 100)  # better, but not significantly
    assert roll_back_now(1, 30.0, 600.0) and not roll_back_now(0, 30.0, 600.0)
    assert not roll_back_now(1, 601.0, 600.0) and not roll_back_now(1, 30.0, 0.0)
