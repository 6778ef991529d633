"""A batch waits for its records' acknowledgements (Faust's futures for the changelog, the sink for
everything else); a worker that cannot deliver exits uncommitted."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from streams.broker import EmbeddedBroker
from streams.delivery import EXIT_UNCOMMITTED, DeliveryFailed, delivered
from streams.sink import Sink


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
    code = ("import atexit; from streams.delivery import exit_uncommitted\n"
            "atexit.register(lambda: print('committed'))\n"
            "try:\n    exit_uncommitted('broker gone')\nfinally:\n    print('committed')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_UNCOMMITTED
    assert "committed" not in r.stdout
    assert "broker gone" in r.stderr


def test_the_sink_returns_once_the_broker_has_every_message(broker, consume_all):
    sink = Sink(broker)
    for i in range(50):
        sink.send("t.sink", f"u{i}".encode(), b"list", [("h", b"v")] if i == 0 else None)
    sink.deliver(30)
    assert sink.producer.flush(0) == 0  # nothing left in the client's queue
    got = consume_all(broker, "t.sink", lambda ms: len(ms) >= 50, timeout=30)
    assert sorted(m.key() for m in got) == sorted(f"u{i}".encode() for i in range(50))
    assert [m.headers() for m in got if m.key() == b"u0"] == [[("h", b"v")]]


def test_the_sink_fails_the_batch_when_the_broker_is_gone():
    with EmbeddedBroker() as b:
        sink = Sink(b.bootstrap)
        sink.send("t.gone", b"u", b"warm")
        sink.deliver(30)
    sink.send("t.gone", b"u", b"list")
    with pytest.raises(DeliveryFailed, match=r"1 records not acknowledged by the broker within 1 s"):
        sink.deliver(1)
