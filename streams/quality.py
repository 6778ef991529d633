"""Prequential (test-then-train) quality: did the user's next event hit the list we last emitted?

Each emitted list is remembered per (user, scenario), together with what an online popularity
baseline would have shown that user at the same moment (the scenario's most-consumed items so far,
minus the same recently-seen items our list leaves out). When the user's next event in that
scenario arrives, both lists are scored before the event updates anything, so the two hit rates
are measured on exactly the same trials and their ratio is the lift of real-time updating.

Memory is bounded: the remembered lists are an LRU over `capacity` (user, scenario) pairs; a user
evicted, or one whose lists were emitted by another worker before a rebalance, simply gives no trial.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import TypeVar

from river import stats, utils

RECOMMENDERS = ("ours", "popularity")


K = TypeVar("K")
V = TypeVar("V")


class LRU(OrderedDict[K, V]):
    """A dict that forgets its least recently written keys beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: K, value: V) -> V | None:
        """Writes `value`; returns what the key held before (None if nothing)."""
        previous = self.pop(key, None)
        self[key] = value
        if len(self) > self.capacity:
            self.popitem(last=False)
        return previous


class OnlineQuality:
    def __init__(self, scenarios: tuple[str, ...], k: int, window: int, capacity: int, max_seen: int) -> None:
        self.k, self.max_seen = k, max_seen
        self.lists: LRU[tuple[str, str], tuple[frozenset[str], frozenset[str]]] = LRU(capacity)
        self.popularity = {s: Counter[str]() for s in scenarios}
        self._top: dict[str, list[str]] = {}  # per scenario, invalidated by new counts
        self.rolling = {(s, r): utils.Rolling(stats.Mean, window_size=window) for s in scenarios for r in RECOMMENDERS}
        self.trials: Counter[str] = Counter()
        self.hits: Counter[tuple[str, str]] = Counter()

    def trial(self, user_id: str, scenario: str, item_id: str) -> tuple[bool, bool] | None:
        """Scores the event against both remembered lists: (ours hit, popularity hit), or None."""
        lists = self.lists.get((user_id, scenario))
        if lists is None:
            return None
        result = (item_id in lists[0], item_id in lists[1])
        self.trials[scenario] += 1
        for r, hit in zip(RECOMMENDERS, result, strict=True):
            self.rolling[(scenario, r)].update(float(hit))
            self.hits[(scenario, r)] += hit
        return result

    def count(self, scenario: str, item_id: str) -> None:
        """The event, once scored, feeds the popularity baseline."""
        self.popularity[scenario][item_id] += 1
        self._top.pop(scenario, None)

    def remember(self, user_id: str, scenario: str, ours: list[str], seen: frozenset[str]) -> None:
        top = self._top.get(scenario)
        if top is None:  # once per scenario per micro-batch, not per user
            top = self._top[scenario] = [i for i, _ in self.popularity[scenario].most_common(self.k + self.max_seen)]
        baseline = frozenset([i for i in top if i not in seen][: self.k])
        self.lists.put((user_id, scenario), (frozenset(ours), baseline))

    def hit_rate(self, scenario: str, recommender: str) -> float:
        """Rolling hit rate over the last `window` trials."""
        return float(self.rolling[(scenario, recommender)].get())

    def summary(self) -> dict[str, float | int]:
        """Cumulative hit rates over every trial so far, all scenarios together."""
        trials = sum(self.trials.values())
        out: dict[str, float | int] = {"trials": trials}
        for r in RECOMMENDERS:
            hits = sum(v for (_, rec), v in self.hits.items() if rec == r)
            out[f"hit_rate_{r}"] = round(hits / trials, 4) if trials else 0.0
        return out
