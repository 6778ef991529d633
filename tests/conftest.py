"""Shared fixtures: small, seeded data sets so model tests run in seconds on 2 cores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.data.dataset import SequenceData, build
from models.data.synth import SynthSpec, generate
from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def small_synth() -> SequenceData:
    events, items = generate(SynthSpec(users=150, items=120, events_per_user=30, seed=3))
    return build(events, items, ("home", "search", "video"))


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A real Tansu broker on a free loopback port for the whole session; yields its bootstrap."""
    with EmbeddedBroker() as b:
        yield b.bootstrap
