"""Follows iu.recommendations the way a consumer of the product would, for the demo: latency of each
list (ingest → emitted, the same clock as iu_end_to_end_latency_seconds) and each user's last two
lists, so the shift a user's latest events caused can be shown side by side."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from models.data.contract import Recommendation
from streams.kafka.reader import read
from streams.kafka.topics import RECOMMENDATIONS


class RecommendationWatcher(threading.Thread):
    def __init__(self, bootstrap: str, window: int = 2000) -> None:
        super().__init__(name="iu-recwatch", daemon=True)
        self.bootstrap = bootstrap
        self.stop_event = threading.Event()
        self.count = 0
        self.latencies_ms: list[int] = []
        self.recent_ms: deque[int] = deque(maxlen=window)
        self.lists: dict[str, deque[Recommendation]] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        for value in read(self.bootstrap, RECOMMENDATIONS, stop=self.stop_event):
            rec = Recommendation.from_json(value)
            with self._lock:
                self.count += 1
                self.latencies_ms.append(rec.latency_ms)
                self.recent_ms.append(rec.latency_ms)
                self.lists.setdefault(rec.user_id, deque(maxlen=2)).append(rec)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)

    def recent_percentiles(self) -> tuple[float, float]:
        """p50 and p99 (ms) over the last `window` lists: what the live view shows."""
        with self._lock:
            sample = np.array(self.recent_ms or [np.nan])
        return float(np.percentile(sample, 50)), float(np.percentile(sample, 99))

    def shifted_users(self, n: int) -> list[tuple[str, Recommendation, Recommendation]]:
        """The `n` users whose latest list moved furthest from the one before it: (user, before, after)."""
        with self._lock:
            pairs = [(u, q[0], q[1]) for u, q in self.lists.items() if len(q) == 2]
        return sorted(pairs, key=lambda p: (len(set(p[1].item_ids) & set(p[2].item_ids)), p[0]))[:n]
