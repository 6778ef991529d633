"""Exact counters for /stats, which the demo and the tests wait on; Prometheus has the rest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)

    def as_json(self) -> dict:
        return {**self.counts, "uptime_s": round(time.time() - self.started, 3)}
