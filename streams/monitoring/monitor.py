"""The last step of the flow: a processed micro-batch becomes metrics, quality scores and drift alarms.

Order matters within a batch: events are scored against the lists emitted *before* them (the
previous batches), then counted into the popularity baseline, then this batch's new lists are
remembered. Everything here is bounded in memory (LRUs, fixed windows) whatever the user count.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np

from streams.core.batch import BatchResult, Emission
from streams.core.decode import Reason
from streams.core.state import Outcome
from streams.kafka.topics import events_topic
from streams.monitoring.drift import ALL, DIRECTIONS, Detection, DriftDetectors, detector_labels
from streams.monitoring.metrics import WorkerMetrics
from streams.monitoring.novelty import CategoryNovelty
from streams.monitoring.quality import LRU, RECOMMENDERS, OnlineQuality
from streams.settings import Settings

log = logging.getLogger("iu.drift")
TRIAL_OUTCOMES = (Outcome.APPLIED, Outcome.LATE)  # new interactions; duplicates and redeliveries are not


class Monitor:
    def __init__(self, scenarios: tuple[str, ...], topic_scenarios: dict[str, str], k: int, window: int,
                 capacity: int, max_seen: int, categories: Mapping[str, tuple[str, ...]],
                 metrics: WorkerMetrics) -> None:
        """`topic_scenarios`: event topic -> its scenario, to label records that did not decode;
        `categories`: item -> its catalog categories (the catalog's live map, read as items arrive)."""
        self.scenarios, self.topic_scenarios, self.categories = scenarios, topic_scenarios, categories
        self.metrics = metrics
        self.novelty = CategoryNovelty(capacity)
        self.quality = OnlineQuality(scenarios, k, window, capacity, max_seen)
        self.drift = DriftDetectors(scenarios)
        self.fused: LRU[tuple[str, str], np.ndarray] = LRU(capacity)  # each pair's last fused vector
        self.detections: Counter[str] = Counter()
        metrics.initialise(scenarios, [o.value for o in Outcome], RECOMMENDERS, [r.value for r in Reason],
                           detector_labels(scenarios), DIRECTIONS)


    @classmethod
    def from_settings(cls, settings: Settings, max_seen: int, categories: Mapping[str, tuple[str, ...]],
                      metrics: WorkerMetrics) -> Monitor:
        """The worker's monitor: its scenarios, K, window and capacity from `settings`; `max_seen`: the
        model's ring length (the items a list filters out)."""
        return cls(settings.scenarios, {events_topic(s): s for s in settings.scenarios}, settings.top_k,
                   settings.quality_window, settings.monitor_users, max_seen, categories, metrics)
    def observe(self, result: BatchResult, batch_events: int) -> list[Detection]:
        found: list[Detection | None] = []
        self.metrics.batch.observe(batch_events)
        self.metrics.withheld.inc(result.withheld)
        events = Counter((a.scenario, a.action, a.outcome.value) for a in result.accepted)
        events.update((self.topic_scenarios.get(d.record.topic, ALL), "invalid", "dead_letter")
                      for d in result.dead_letters)
        trials: Counter[str] = Counter()
        hits: Counter[tuple[str, str]] = Counter()
        self.quality.follow(result.challenger)
        for a in result.accepted:
            if a.outcome not in TRIAL_OUTCOMES:
                continue
            for s in self.scenarios:
                found.append(self.drift.update("scenario_mix", s, float(a.scenario == s)))
            novel = self.novelty.observe(a.user_id, self.categories.get(a.item_id, ()))
            if novel is not None:
                found.append(self.drift.update("category_novelty", ALL, novel))
            scored = self.quality.trial(a.user_id, a.scenario, a.item_id)
            if scored is not None:
                trials[a.scenario] += 1
                hits.update((a.scenario, r) for r, hit in scored.items() if hit)
                found.append(self.drift.update("hit_rate", a.scenario, float(scored["ours"])))
            self.quality.count(a.scenario, a.item_id)
        # Prometheus label lookups take a lock each: once per label set per batch, not per event.
        for labels, n in events.items():
            self.metrics.events.labels(*labels).inc(n)
        for scen, n in trials.items():
            self.metrics.trials.labels(scen).inc(n)
        for labels, n in hits.items():
            self.metrics.hits.labels(*labels).inc(n)
        for e in result.emitted:
            self.metrics.recommendations.labels(e.scenario).inc()
            self.metrics.end_to_end.observe(max(e.latency_s, 0.0))
            self.quality.remember(e.user_id, e.scenario, e.items, e.seen, e.challenger)
        found.extend(self.drift.update("interest_shift", ALL, d) for d in self._interest_shifts(result.emitted))
        if result.emitted:
            found.append(self.drift.update("latency", ALL, float(np.mean([e.latency_s for e in result.emitted]))))
        for s in self.scenarios:
            for r in RECOMMENDERS:
                self.metrics.hit_rate.labels(s, r).set(self.quality.hit_rate(s, r))
        detections = [d for d in found if d is not None]
        for d in detections:
            self.metrics.drift.labels(d.detector, d.scenario, d.direction).inc()
            self.detections[f"{d.detector}:{d.direction}"] += 1
            log.warning(json.dumps(d.as_dict()))
        return detections

    def _interest_shifts(self, emitted: list[Emission]) -> list[float]:
        """Cosine distance between each user's successive fused vectors for one scenario: every user's
        distance feeds one detector, so it tracks how fast users' interests move overall. Computed for
        the whole batch at once: per list, numpy's call overhead was most of the cost."""
        pairs = [(prev, e.fused) for e in emitted
                 if (prev := self.fused.put((e.user_id, e.scenario), e.fused)) is not None]
        if not pairs:
            return []
        before, after = np.stack([p for p, _ in pairs]), np.stack([f for _, f in pairs])
        norms = np.maximum(np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1), 1e-12)
        return (1.0 - np.einsum("ij,ij->i", before, after) / norms).tolist()

    def summary(self) -> dict:
        """For /stats and the demo: cumulative hit rates, the current rolling ones, drift counts."""
        rolling = {f"{s}:{r}": round(self.quality.hit_rate(s, r), 4) for s in self.scenarios for r in RECOMMENDERS}
        return {**self.quality.summary(), "rolling_hit_rate": rolling, "drift": dict(self.detections),
                "shadow": self.quality.shadow.as_json() if self.quality.shadow.version else None}
