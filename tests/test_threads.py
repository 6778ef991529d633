"""The per-batch thread budget (streams/threads.py), with the real torch and numpy's real BLAS."""

from __future__ import annotations

import threading

import numpy as np  # noqa: F401  (loads the BLAS the budget controls)
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from streams.threads import ComputeThreads


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_partial_and_full_batches_get_their_counts_in_the_calling_thread():
    seen: list[tuple[int, int, set[int]]] = []

    def compute() -> None:  # the worker's compute thread, as Processor.process runs there
        threads = ComputeThreads(partial=1, full=2)
        for backlog in (False, True, False):
            n = threads.fit(backlog)
            seen.append((n, torch.get_num_threads(), blas_threads()))

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # puts the process's BLAS back as it was
        worker = threading.Thread(target=compute)
        worker.start()
        worker.join(30)
    assert seen == [(1, 1, {1}), (2, 2, {2}), (1, 1, {1})]
    assert torch.get_num_threads() == before  # torch's count is per thread: the caller's own is untouched
