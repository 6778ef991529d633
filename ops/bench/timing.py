"""Throughput of a callable, timed the same way for our encoder and for the RecBole peer.

Kept free of product imports (numpy and torch only) so the RecBole venv, which has neither our
dependencies nor their versions, can import it and time SASRec exactly as we time ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def sync(dev: torch.device) -> None:
    """CUDA calls return before the work is done: wait for it, or the timing measures launches."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def rate(fn: Callable[[], object], batch: int, dev: torch.device, min_s: float) -> float:
    """Sequences/s: median over repeats totalling at least `min_s` (and at least 5), after warm-up."""
    for _ in range(3):
        fn()
    sync(dev)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_s or len(times) < 5:
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times))
