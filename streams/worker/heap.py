"""Long-running processes keep their start-up objects out of the garbage collector."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def settle_heap() -> int:
    """Keep what is loaded by now out of the garbage collector for good. A process holding torch,
    transformers, a model and Faust has ~500k long-lived objects, and every full collection walks
    them all: pauses of hundreds of milliseconds under load otherwise (iu_gc_pause_seconds shows
    them). Call once start-up is done, before the stream flows.
    Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def time_collections(record: Callable[[int, float], None]) -> None:
    """Every collection from now on: `record(generation, seconds)`."""
    started = 0.0

    def on_collection(phase: str, info: dict) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            record(info["generation"], time.perf_counter() - started)

    gc.callbacks.append(on_collection)
