"""Drift on the synthetic stream with an abrupt interest shift: alarms come after the shift, fast, and
not before it.

The stated bounds (measured margins in ops/bench/RESULTS.md): on SynthSpec(users=300, shift_at=0.5)
the category-novelty detector raises no "up" alarm in the ~9,000 events before the shift (bound: at
most 1) and its first one within 1,000 events after it (measured 119-335 over seeds 1-10).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from models.data.contract import Event
from models.data.synth import SynthSpec, generate, shift_ts
from streams.cli.datasets import write_synth
from streams.core.batch import Record
from streams.kafka.replay import event_json
from streams.kafka.topics import events_topic
from streams.monitoring.drift import ALL, Detection, DriftDetectors
from streams.monitoring.metrics import WorkerMetrics
from streams.monitoring.monitor import Monitor
from streams.monitoring.novelty import CategoryNovelty
from streams.settings import Settings
from streams.worker.runtime import load_processor

SPEC = SynthSpec(users=300, shift_at=0.5, seed=11)
FALSE_ALARMS_BOUND = 1
DELAY_BOUND = 1_000  # events after the shift
BATCH = 256


def shift_index(events: list[Event], spec: SynthSpec) -> int:
    """Position of the first event at or after the shift (every user shifts at the same time)."""
    at = shift_ts(spec)
    assert at is not None
    return next(i for i, e in enumerate(events) if e.ts >= at)


def novelty_alarms(spec: SynthSpec) -> list[tuple[int, str]]:
    """The detector on its own, straight from the generator: (event index, direction) of each alarm."""
    events, items = generate(spec)
    categories = {it.item_id: it.categories for it in items}
    novelty, detectors = CategoryNovelty(100_000), DriftDetectors(spec.scenarios)
    alarms = []
    for k, e in enumerate(events):
        x = novelty.observe(e.user_id, categories[e.item_id])
        d = detectors.update("category_novelty", ALL, x) if x is not None else None
        if d is not None:
            alarms.append((k, d.direction))
    return alarms


def test_novelty_stays_quiet_without_a_shift() -> None:
    assert [a for a in novelty_alarms(SynthSpec(users=300, seed=11)) if a[1] == "up"] == []


def test_novelty_alarms_after_the_shift_on_other_seeds() -> None:
    for seed in (1, 2, 3):
        spec = SynthSpec(users=300, shift_at=0.5, seed=seed)
        shift = shift_index(generate(spec)[0], spec)
        ups = [k for k, direction in novelty_alarms(spec) if direction == "up"]
        assert len([k for k in ups if k < shift]) <= FALSE_ALARMS_BOUND, (seed, ups, shift)
        assert any(shift <= k <= shift + DELAY_BOUND for k in ups), (seed, ups, shift)


@pytest.fixture(scope="module")
def synth_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The shifted stream on disk and a one-epoch model trained on it (the detector under test does
    not depend on model quality; the processor just needs a model for these items)."""
    root = tmp_path_factory.mktemp("drift")
    data = write_synth(root / "data", SPEC)
    model = root / "model"
    r = subprocess.run([sys.executable, "-m", "streams.cli", "train", "--dataset", str(data), "--out", str(model),
                        "--epochs", "1", "--dim", "32", "--layers", "1", "--max-len", "20", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    yield data, model


def test_shift_is_detected_through_the_pipeline(synth_model: tuple[Path, Path], tmp_path: Path) -> None:
    """Events go through the real processor (decode, state, encoder, milvus-lite) and the monitor, in
    micro-batches, as in the worker; alarms are located by the batch they came out of."""
    _, model = synth_model
    settings = Settings(model=str(model), milvus_uri=str(tmp_path / "milvus.db"))
    metrics = WorkerMetrics(CollectorRegistry())
    processor = load_processor(settings, metrics)
    monitor = Monitor.from_settings(settings, processor.encoder.cfg.max_len, processor.catalog.categories, metrics)
    events = generate(SPEC)[0]
    shift = shift_index(events, SPEC)
    stop = shift + 2 * DELAY_BOUND
    stored: dict[str, bytes | None] = {}
    alarms: list[tuple[int, Detection]] = []
    now = int(time.time() * 1000)
    for b in range(0, stop, BATCH):
        chunk = events[b:min(b + BATCH, stop)]
        records = [Record(events_topic(e.scenario), 0, b + i, e.user_id.encode(), event_json(e), now)
                   for i, e in enumerate(chunk)]
        result = processor.process(records, {e.user_id: stored.get(e.user_id) for e in chunk})
        assert not result.dead_letters
        stored.update(result.states)
        alarms += [(b + len(chunk), d) for d in monitor.observe(result, len(records))]
    ups = [k for k, d in alarms if d.detector == "category_novelty" and d.direction == "up"]
    before = [k for k in ups if k <= shift]
    after = [k for k in ups if k > shift]
    assert len(before) <= FALSE_ALARMS_BOUND, (before, shift)
    assert after and after[0] - shift <= DELAY_BOUND + BATCH, (after, shift)
    assert monitor.summary()["drift"]["category_novelty:up"] == len(ups)
