"""The benchmarks under ops/bench are not timed tests, but they must run: each one's `--help` builds
what it can without a broker (the ceiling agent builds its whole Faust app, transport included).
One process for all five, so torch and Faust are imported once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # starts brokers, workers or `iu` processes

BENCHES = ("ops.bench.e2e", "ops.bench.guarantee", "ops.bench.encoder", "ops.bench.vectors", "ops.bench.ceiling",
           "ops.bench.continual")
SCRIPT = """
import runpy, sys

for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    print(f"=== {module} ok", flush=True)
"""


def test_every_bench_starts_and_explains_itself():
    env = {**os.environ, "IU_KAFKA_BOOTSTRAP": "127.0.0.1:9"}  # never dialled by --help
    run = subprocess.run([sys.executable, "-c", SCRIPT, *BENCHES], capture_output=True, text=True, timeout=180,
                         env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for module in BENCHES:
        assert f"=== {module} ok" in run.stdout
    assert run.stdout.lower().count("usage") >= len(BENCHES), run.stdout
