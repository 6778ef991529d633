"""A batch waits for its records' acknowledgements; a worker that cannot deliver exits uncommitted."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from streams.kafka.delivery import EXIT_UNCOMMITTED, DeliveryFailed, delivered


def run(*outcomes: object, timeout: float = 1.0) -> None:
    """`delivered` over futures resolved as given: a value, an exception, or None (never resolved)."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for o in outcomes:
            f = loop.create_future()
            if isinstance(o, BaseException):
                loop.call_soon(f.set_exception, o)
            elif o is not None:
                loop.call_soon(f.set_result, o)
            futures.append(f)
        await delivered(futures, timeout)
    asyncio.run(main())


def test_all_acknowledged_returns():
    run("meta", "meta", "meta")
    run()


def test_a_refused_record_fails_the_batch():
    with pytest.raises(DeliveryFailed, match=r"refused a record: .*NotLeader"):
        run("meta", RuntimeError("NotLeaderForPartition"), "meta")


def test_a_record_never_acknowledged_fails_the_batch_at_the_timeout():
    with pytest.raises(DeliveryFailed, match=r"3 records not acknowledged by the broker within 0\.2 s"):
        run("meta", None, "meta", timeout=0.2)


def test_exit_uncommitted_skips_cleanup_that_would_commit():
    """`finally` blocks and atexit hooks (where Faust would commit) must not run."""
    code = ("import atexit; from streams.kafka.delivery import exit_uncommitted\n"
            "atexit.register(lambda: print('committed'))\n"
            "try:\n    exit_uncommitted('broker gone')\nfinally:\n    print('committed')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_UNCOMMITTED
    assert "committed" not in r.stdout
    assert "broker gone" in r.stderr
