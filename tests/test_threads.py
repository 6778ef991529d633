"""The per-batch thread budget (streams/worker/threads.py), with the real torch and numpy's real BLAS.

In a fresh interpreter, as in the worker, where the compute thread is the only one that sets the
counts: OpenBLAS (numpy's and scipy's builds, 0.3.30/0.3.31) ignores a count set from one thread once
another has set one, so in this test process, where other tests ran the processor on the main thread,
the check would say nothing about the worker.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, threading
import numpy, torch
from threadpoolctl import threadpool_info
from streams.worker.threads import ComputeThreads

def blas():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})

seen = []
def compute():  # the worker's compute thread, where Processor.process runs
    threads = ComputeThreads(partial=1, full=2)
    for backlog in (False, True, False):
        seen.append([threads.fit(backlog), torch.get_num_threads(), blas()])

main_before = torch.get_num_threads()
worker = threading.Thread(target=compute)
worker.start()
worker.join(60)
print(json.dumps({"seen": seen, "main_torch_before": main_before, "main_torch_after": torch.get_num_threads()}))
"""


def test_partial_and_full_batches_get_their_counts_in_the_compute_thread():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["seen"] == [[1, 1, [1]], [2, 2, [2]], [1, 1, [1]]]
    assert out["main_torch_after"] == out["main_torch_before"]  # torch's count is per thread


def test_the_worker_shares_the_gil_at_the_interval_it_is_given():
    probe = ("import sys; from streams.settings import Settings; from streams.worker.threads import share_gil; "
             "share_gil(Settings.from_env({'IU_GIL_SWITCH_MS': '0.25'}).gil_switch_ms); print(sys.getswitchinterval())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert abs(float(out.stdout) - 0.00025) < 1e-9
