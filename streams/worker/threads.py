"""How many CPU threads the worker's heavy work (torch and numpy's BLAS) may use, batch by batch.

With one thread per core, each forward and each BLAS call of a partial micro-batch (few users, small
matrices) waits for its slowest thread, the one that shares a core with the event loop, while the
idle ones spin. A full micro-batch means a backlog, where the larger matrices gain from every core
and the event loop has work queued anyway. So: one core fewer on partial batches, every core on
full ones (ops/bench/RESULTS.md has the runs: on 2 cores, CPU per event and p99 at 1,000 events/s,
and flat-out throughput).

Only the compute thread may set them: OpenBLAS (numpy's and scipy's builds, 0.3.30/0.3.31) ignores a
count set from one thread once another thread has set one, and nothing tells.

And how long each of the worker's Python threads (event loop, aiokafka's consumer thread, the compute
thread) keeps the GIL while another waits for it: `share_gil`.
"""

from __future__ import annotations

import sys

import torch
from threadpoolctl import ThreadpoolController


class ComputeThreads:
    def __init__(self, partial: int, full: int) -> None:
        """Call after numpy is loaded (its BLAS is found among the process's libraries)."""
        self.partial, self.full = partial, full
        self._blas = ThreadpoolController().select(user_api="blas").lib_controllers
        self.current = 0

    def fit(self, backlog: bool) -> int:
        """Set the count for the next batch, in the one thread that runs every batch: torch keeps
        it per thread (OpenMP), BLAS for the process. Returns it."""
        n = self.full if backlog else self.partial
        if n != self.current:
            torch.set_num_threads(n)
            for lib in self._blas:
                lib.set_num_threads(n)
            self.current = n
        return n


def share_gil(switch_ms: float) -> None:
    """The GIL's switch interval for this process. At Python's 5 ms a thread that wants the GIL waits
    up to 5 ms behind one running Python, and a worker's three busy threads hold it most of the time
    under load: the event loop, which acknowledges, produces and starts each batch, queues behind the
    other two many times a batch. A shorter interval trades a little CPU per event for a lower latency
    tail (ops/bench/RESULTS.md)."""
    sys.setswitchinterval(switch_ms / 1000)
