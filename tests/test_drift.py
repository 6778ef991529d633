"""Drift on the synthetic stream with an abrupt interest shift: every user's interests are redrawn
halfway through. A model is trained on the data set, then the Faust-free pipeline (processor and
monitor: real torch, real milvus-lite) replays 300 users' events in time order.

Stated bounds: the interest-shift detector (distance between users' successive fused vectors, all
users together) alarms upward at most once before the shift, and first alarms upward within
SHIFT_BOUND events after it. Measured on this machine: none before, the first ~2,800 events after.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.data.synth import SynthSpec
from streams.cli.datasets import write_synth
from streams.drift import ALL
from streams.monitor import Monitor
from streams.processor import Record
from streams.replay import event_json
from streams.runtime import load_processor
from streams.settings import Settings
from streams.topics import events_topic

SPEC = SynthSpec(users=1000, events_per_user=60, shift_at=0.5, seed=2020)
REPLAYED_USERS = 300
SHIFT_BOUND = 6000
FALSE_ALARMS_BOUND = 1
BATCH = 256


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The data set and a model trained on it: long enough (40 epochs) for the fused vectors to carry
    interests; a one-epoch model puts nearly the same vector on every user."""
    root = tmp_path_factory.mktemp("drift")
    data = write_synth(root / "data", SPEC)
    model = root / "model"
    r = subprocess.run([sys.executable, "-m", "streams.cli", "train", "--dataset", str(data), "--out", str(model),
                        "--epochs", "40", "--patience", "100", "--dim", "32", "--layers", "1", "--max-len", "20",
                        "--device", "cpu"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return data, model


def test_interest_shift_is_detected_soon_after_the_shift_and_not_before(shifted, tmp_path):
    from models.data.contract import read_events

    data, model = shifted
    settings = Settings(model=str(model), milvus_uri=str(tmp_path / "milvus.db"), device="cpu")
    processor = load_processor(settings)
    monitor = Monitor(settings.scenarios, {events_topic(s): s for s in settings.scenarios}, settings.top_k,
                      settings.quality_window, settings.monitor_users, processor.encoder.cfg.max_len)
    events = sorted((e for e in read_events(data / "events.csv") if int(e.user_id[1:]) < REPLAYED_USERS),
                    key=lambda e: e.ts)
    shift_ts = min(e.ts for e in events) + SPEC.shift_at * SPEC.span_days * 86_400_000
    shift_at = next(n for n, e in enumerate(events) if e.ts >= shift_ts)

    stored: dict[str, bytes] = {}
    alarms: list[tuple[int, str]] = []  # (event index at the end of the batch, direction)
    for start in range(0, len(events), BATCH):
        chunk = events[start:start + BATCH]
        now = int(time.time() * 1000)
        records = [Record(events_topic(e.scenario), 0, start + k, e.user_id.encode(), event_json(e), now)
                   for k, e in enumerate(chunk)]
        result = processor.process(records, {e.user_id: stored.get(e.user_id) for e in chunk})
        stored.update(result.states)
        alarms += [(start + len(chunk), d.direction) for d in monitor.observe(result, len(records))
                   if d.detector == "interest_shift" and d.scenario == ALL]

    before = [n for n, d in alarms if d == "up" and n <= shift_at]
    after = [n for n, d in alarms if d == "up" and n > shift_at]
    report = f"shift at event {shift_at} of {len(events)}; alarms {alarms}; quality {monitor.summary()}"
    assert len(before) <= FALSE_ALARMS_BOUND, report
    assert after and after[0] - shift_at <= SHIFT_BOUND, report
    print(report)
