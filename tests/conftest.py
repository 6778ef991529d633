"""Shared fixtures: small, seeded data sets and models so tests run in seconds to minutes on 2 cores."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from models.data.dataset import SequenceData, build
from models.data.synth import SynthSpec, generate
from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def small_synth() -> SequenceData:
    events, items = generate(SynthSpec(users=150, items=120, events_per_user=30, seed=3))
    return build(events, items, ("home", "search", "video"))


def _consume_all(bootstrap: str, topic: str, until: object, timeout: float = 60.0) -> list:
    """Plain confluent-kafka, from the beginning, until `until(messages)` holds or the timeout."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{topic}-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):  # type: ignore[operator]
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        c.close()
    return out


@pytest.fixture(scope="session")
def consume_all() -> Callable[..., list]:
    """Reads a topic with plain confluent-kafka: `consume_all(bootstrap, topic, until, timeout)`."""
    return _consume_all


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A real Tansu broker on a free loopback port for the whole session; yields its bootstrap."""
    with EmbeddedBroker() as b:
        yield b.bootstrap


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on ml-100k for one epoch: enough for the pipeline tests, which check
    mechanics (state, topics, metrics), not accuracy. Its model_version starts with "tiny-"."""
    ml100k = Path("var/data/ml-100k")
    if not (ml100k / "events.csv").exists():
        pytest.fail("ml-100k is not prepared: run `iu data fetch ml-100k` (make test does it first)")
    out = tmp_path_factory.mktemp("model") / "tiny"
    r = subprocess.run([sys.executable, "-m", "streams.cli", "train", "--dataset", str(ml100k), "--out", str(out),
                        "--epochs", "1", "--dim", "32", "--layers", "1", "--max-len", "20", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out
