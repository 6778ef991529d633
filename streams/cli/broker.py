"""`iu broker`: run the embedded Tansu broker alone, with every product topic created."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from streams.broker import BrokerError, EmbeddedBroker, create_topics
from streams.settings import Settings
from streams.topics import all_topics


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    p = sub.add_parser(
        "broker",
        help="run the embedded Kafka-protocol broker (Tansu) with the product's topics",
        description="Start Tansu (memory-only: stopping it loses every topic) on a loopback port, create the "
        "event, catalog, recommendation and dead-letter topics with IU_PARTITIONS partitions, print the "
        "settings a worker needs (IU_KAFKA_BOOTSTRAP=HOST:PORT IU_BROKER_PROFILE=tansu), and run until Ctrl-C.",
        formatter_class=fmt,
    )
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free port)")
    p.add_argument("--partitions", type=int, default=settings.partitions, help="partitions per event topic")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    broker = EmbeddedBroker(port=args.port or None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        bootstrap = broker.start()
        create_topics(bootstrap, all_topics(settings.scenarios, args.partitions))
        # The profile line matters: a worker pointed at this broker needs the Tansu workarounds.
        print(f"IU_KAFKA_BOOTSTRAP={bootstrap} IU_BROKER_PROFILE=tansu", flush=True)
        stop.wait()
    except BrokerError as e:
        print(f"iu: {e}", file=sys.stderr)
        return 1
    finally:
        broker.stop()
    return 0
