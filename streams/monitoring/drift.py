"""Online drift detectors (River) over the signals that say the stream or the model has changed.

- hit_rate (per scenario): ADWIN on the prequential hit stream of our lists. A cut with a lower
  recent mean means the recommendations stopped matching what users do.
- interest_shift (all): ADWIN on the cosine distance between a user's successive fused vectors
  (per scenario), all users and scenarios together. Users changing what they want move their
  vectors further per event; the change per user is small, so it takes every user's samples.
- category_novelty (all): ADWIN on "this event's item is in none of the categories of the user's
  last 20 events" (streams/monitoring/novelty.py). The same question asked in the catalog's taxonomy, so it
  holds however weakly the model's vectors separate interests: the abrupt shift of the synthetic
  stream shows here within a few hundred events (tests/test_drift.py) and barely in the vectors.
- scenario_mix (per scenario): ADWIN on "this event came from scenario s": traffic moving between
  surfaces changes what the fusion weights were trained on.
- latency (all): Page-Hinkley on each micro-batch's mean end-to-end latency, upward only.

ADWIN detects changes both ways; every detection is reported with its direction (the recent mean
against the mean just before), so an alert can pick the direction that hurts (hit rate down, shift
and latency up) while the counter still shows every change.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Protocol

from river import drift

ALL = "all"
DIRECTIONS = ("up", "down")


class _Detector(Protocol):
    drift_detected: bool

    def update(self, x: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Detection:
    detector: str
    scenario: str
    direction: str
    before: float  # the detector's estimate just before the change
    after: float  # the estimate of the recent window
    observations: int  # how many values this detector had seen
    ts_ms: int

    def as_dict(self) -> dict:
        return {"event": "drift", **asdict(self)}


def detector_labels(scenarios: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each detector and the scenario labels it reports under (bounded: metrics pre-create them)."""
    return {"hit_rate": scenarios, "interest_shift": (ALL,), "category_novelty": (ALL,), "scenario_mix": scenarios,
            "latency": (ALL,)}


def _make(name: str) -> _Detector:
    if name == "latency":  # seconds; a sustained rise of ~0.5 s over ~10 batches alarms
        return drift.PageHinkley(min_instances=30, delta=0.05, threshold=5.0, mode="up")
    if name == "hit_rate":  # Bernoulli stream: a wider minimum window keeps early noise from cutting
        return drift.ADWIN(delta=0.002, clock=32, grace_period=200, min_window_length=50)
    return drift.ADWIN(delta=0.002, clock=32, grace_period=200)


class DriftDetectors:
    def __init__(self, scenarios: tuple[str, ...]) -> None:
        self.detectors: dict[tuple[str, str], _Detector] = {
            (name, s): _make(name) for name, labels in detector_labels(scenarios).items() for s in labels}
        self.seen: dict[tuple[str, str], int] = dict.fromkeys(self.detectors, 0)
        # The mean of what each detector's window holds, kept here: ADWIN's own estimate costs a call
        # into its window per update (a fifth of the monitor's time), and Page-Hinkley has none.
        self.mean: dict[tuple[str, str], tuple[float, int]] = dict.fromkeys(self.detectors, (0.0, 0))

    def update(self, name: str, scenario: str, x: float) -> Detection | None:
        key = (name, scenario)
        det = self.detectors[key]
        before, n = self.mean[key]
        det.update(x)
        self.seen[key] += 1
        if not det.drift_detected:
            self.mean[key] = (before + (x - before) / (n + 1), n + 1)
            return None
        after = float(det.estimation) if isinstance(det, drift.ADWIN) else x
        # River restarts a detector at the update after a detection: `after` is the estimate until then.
        self.mean[key] = (after, 0) if isinstance(det, drift.ADWIN) else (x, 1)
        return Detection(name, scenario, "up" if after >= before else "down", round(before, 6), round(after, 6),
                         self.seen[key], int(time.time() * 1000))
