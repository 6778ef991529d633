"""Follows iu.recommendations the way a consumer of the product would, for the demo: latency of each
list (ingest → emitted, the same clock as iu_end_to_end_latency_seconds) and each user's last two
lists, so the shift a user's latest events caused can be shown side by side."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from streams.reader import read
from streams.topics import RECOMMENDATIONS


@dataclass(frozen=True)
class Emitted:
    scenario: str
    items: tuple[str, ...]
    trigger_event_id: str


class RecommendationWatcher(threading.Thread):
    def __init__(self, bootstrap: str, window: int = 2000) -> None:
        super().__init__(name="iu-recwatch", daemon=True)
        self.bootstrap = bootstrap
        self.stop_event = threading.Event()
        self.count = 0
        self.latencies_ms: list[float] = []
        self.recent_ms: deque[float] = deque(maxlen=window)
        self.lists: dict[str, deque[Emitted]] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        for value in read(self.bootstrap, RECOMMENDATIONS, stop=self.stop_event):
            r = json.loads(value)
            latency = float(r["emitted_ts"] - r["ingest_ts"])
            emitted = Emitted(r["scenario"], tuple(i["item_id"] for i in r["items"]), r["trigger_event_id"])
            with self._lock:
                self.count += 1
                self.latencies_ms.append(latency)
                self.recent_ms.append(latency)
                self.lists.setdefault(r["user_id"], deque(maxlen=2)).append(emitted)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)

    def recent_percentiles(self) -> tuple[float, float]:
        """p50 and p99 (ms) over the last `window` lists: what the live view shows."""
        with self._lock:
            sample = np.array(self.recent_ms or [np.nan])
        return float(np.percentile(sample, 50)), float(np.percentile(sample, 99))

    def shifted_users(self, n: int) -> list[tuple[str, Emitted, Emitted]]:
        """The `n` users whose latest list moved furthest from the one before it: (user, before, after)."""
        with self._lock:
            pairs = [(u, q[0], q[1]) for u, q in self.lists.items() if len(q) == 2]
        return sorted(pairs, key=lambda p: (len(set(p[1].items) & set(p[2].items)), p[0]))[:n]
