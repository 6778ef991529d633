"""Prequential (test-then-train) quality: did the user's next event hit the list we last emitted?

Each emitted list is remembered per (user, scenario), together with what an online popularity
baseline would have shown that user at the same moment (the scenario's most-consumed items so far,
minus the same recently-seen items our list leaves out), and, while a shadow model runs, the list it
made for the same user at the same moment. When the user's next event in that scenario arrives, the
lists are scored before the event updates anything, so the hit rates are measured on exactly the same
trials: ours against popularity is the lift of real-time updating; the challenger against ours
(`Shadow`, paired on the trials both had a list for) decides a promotion.

Memory is bounded: the remembered lists are an LRU over `capacity` (user, scenario) pairs; a user
evicted, or one whose lists were emitted by another worker before a rebalance, simply gives no trial.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from river import stats, utils

RECOMMENDERS = ("ours", "popularity", "challenger")


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


class TopCounts:
    """Counts that grow by one at a time, with the `n` largest kept in order as they grow.

    Why not `Counter.most_common`: it scans every item counted (a catalog's worth) each time it is
    asked, and the baseline asks once per scenario per micro-batch: at ml-100k's 1,682 items that scan
    was 30% of the monitor's time. Here an increment costs a set lookup, and a few swaps when it reorders
    the top. An item outside the top had at most the top's smallest count, so one more can lift it in
    only past that one; ties keep the item that got there first."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.counts: Counter[str] = Counter()
        self.top: list[str] = []  # the n most counted, most first
        self._in_top: set[str] = set()

    def add(self, item: str) -> None:
        counts, top = self.counts, self.top
        c = counts[item] = counts[item] + 1
        if item in self._in_top:
            i = top.index(item)
        elif len(top) < self.n:
            i = len(top)
            top.append(item)
            self._in_top.add(item)
        elif c > counts[top[-1]]:
            i = len(top) - 1
            self._in_top.discard(top[i])
            top[i] = item
            self._in_top.add(item)
        else:
            return
        while i > 0 and counts[top[i - 1]] < c:
            top[i - 1], top[i] = item, top[i - 1]
            i -= 1


class Lists(NamedTuple):
    """What each recommender showed a user in one scenario, as last emitted."""

    ours: frozenset[str]
    popularity: frozenset[str]
    challenger: frozenset[str] | None
    challenger_version: str


@dataclass
class Shadow:
    """The champion ("ours") and a challenger scored on the same trials."""

    version: str = ""
    trials: int = 0
    hits_ours: int = 0
    hits_challenger: int = 0
    ours_only: int = 0  # trials only the champion's list hit
    challenger_only: int = 0

    def add(self, ours: bool, challenger: bool) -> None:
        self.trials += 1
        self.hits_ours += ours
        self.hits_challenger += challenger
        self.ours_only += ours and not challenger
        self.challenger_only += challenger and not ours

    def p_value(self) -> float:
        """McNemar's exact test: the chance of discordant trials this lopsided if both were as good."""
        n, low = self.ours_only + self.challenger_only, min(self.ours_only, self.challenger_only)
        return min(1.0, 2 * sum(math.comb(n, k) for k in range(low + 1)) / 2**n) if n else 1.0

    def better(self, alpha: float) -> bool:
        """The challenger hits significantly more often than the champion."""
        return self.challenger_only > self.ours_only and self.p_value() < alpha

    def as_json(self) -> dict:
        rate = {r: round(h / self.trials, 4) if self.trials else 0.0
                for r, h in (("ours", self.hits_ours), ("challenger", self.hits_challenger))}
        return {"version": self.version, "trials": self.trials, "hit_rate_ours": rate["ours"],
                "hit_rate_challenger": rate["challenger"], "p_value": round(self.p_value(), 6)}


class OnlineQuality:
    def __init__(self, scenarios: tuple[str, ...], k: int, window: int, capacity: int, max_seen: int) -> None:
        self.k, self.window = k, window
        self.lists: LRU[tuple[str, str], Lists] = LRU(capacity)
        self.shadow = Shadow()
        self.popularity = {s: TopCounts(k + max_seen) for s in scenarios}
        self.rolling = {(s, r): utils.Rolling(stats.Mean, window_size=window) for s in scenarios for r in RECOMMENDERS}
        self.trials: Counter[str] = Counter()
        self.hits: Counter[tuple[str, str]] = Counter()

    def trial(self, user_id: str, scenario: str, item_id: str) -> dict[str, bool] | None:
        """Scores the event against the remembered lists: recommender -> hit (the challenger only when the
        current shadow model made a list), or None when no list was emitted for the user here."""
        lists = self.lists.get((user_id, scenario))
        if lists is None:
            return None
        result = {"ours": item_id in lists.ours, "popularity": item_id in lists.popularity}
        if lists.challenger is not None and self.shadow.version and lists.challenger_version == self.shadow.version:
            result["challenger"] = item_id in lists.challenger
            self.shadow.add(result["ours"], result["challenger"])
        self.trials[scenario] += 1
        for r, hit in result.items():
            self.rolling[(scenario, r)].update(float(hit))
            self.hits[(scenario, r)] += hit
        return result

    def count(self, scenario: str, item_id: str) -> None:
        """The event, once scored, feeds the popularity baseline."""
        self.popularity[scenario].add(item_id)

    def remember(self, user_id: str, scenario: str, ours: list[str], seen: frozenset[str],
                 challenger: list[str] | None = None) -> None:
        baseline = frozenset([i for i in self.popularity[scenario].top if i not in seen][: self.k])
        shown = None if challenger is None else frozenset(challenger)
        self.lists.put((user_id, scenario), Lists(frozenset(ours), baseline, shown, self.shadow.version))

    def follow(self, challenger: str) -> None:
        """The shadow model now running ("": none); a new one starts its paired count afresh."""
        if challenger != self.shadow.version:
            self.shadow = Shadow(challenger)
            for s, r in self.rolling:
                if r == "challenger":
                    self.rolling[(s, r)] = utils.Rolling(stats.Mean, window_size=self.window)

    def hit_rate(self, scenario: str, recommender: str) -> float:
        """Rolling hit rate over the last `window` trials."""
        return float(self.rolling[(scenario, recommender)].get())

    def summary(self) -> dict[str, float | int]:
        """Cumulative hit rates over every trial so far, all scenarios together."""
        trials = sum(self.trials.values())
        out: dict[str, float | int] = {"trials": trials}
        for r in ("ours", "popularity"):  # the challenger's: in `shadow`, on its own trials
            hits = sum(v for (_, rec), v in self.hits.items() if rec == r)
            out[f"hit_rate_{r}"] = round(hits / trials, 4) if trials else 0.0
        return out
