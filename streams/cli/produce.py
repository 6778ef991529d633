"""`iu replay` and `iu publish`: put a data set, or JSON lines from stdin, onto the event topics."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from models.data.contract import read_events, read_items
from streams.cli.datasets import resolve
from streams.kafka.admin import create_topics
from streams.kafka.broker import configured_bootstrap
from streams.kafka.replay import event_messages, producer, publish, publish_catalog
from streams.kafka.topics import all_topics, events_topic
from streams.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    r = sub.add_parser(
        "replay",
        help="publish a data set's catalog, then its events in time order",
        description="Publishes items.csv to iu.items, then events.csv (sorted by time) to "
        "iu.events.<scenario>, keyed by user id, with a progress bar. Needs IU_KAFKA_BOOTSTRAP "
        "(the address `iu worker` or `iu broker` prints).",
        formatter_class=fmt,
    )
    r.add_argument("--dataset", default="ml-100k", help="ml-100k, synth, or a folder with events.csv/items.csv")
    r.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    r.add_argument("--limit", type=int, default=0, help="publish only the first N events (0: all)")
    r.add_argument("--no-catalog", action="store_true", help="do not publish the catalog first")
    r.set_defaults(func=_replay)

    p = sub.add_parser(
        "publish",
        help="publish JSON events from stdin, one per line",
        description="Each line goes to iu.events.<scenario> (its own scenario field, or --scenario), keyed "
        "by its user_id. Lines that are not valid events are sent as they are: the worker dead-letters them.",
        formatter_class=fmt,
    )
    p.add_argument("--scenario", default=None,
                   help="send every line to this scenario's topic (default: each event's own scenario)")
    p.set_defaults(func=_publish)


def _bootstrap(settings: Settings) -> str:
    bootstrap = configured_bootstrap(settings)
    create_topics(bootstrap, all_topics(settings.scenarios, settings.partitions))
    return bootstrap


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    prod = producer(_bootstrap(settings), idempotent=not settings.tansu)
    folder = resolve(args.dataset, settings)
    if not args.no_catalog:
        print(f"catalog: {publish_catalog(prod, read_items(folder / 'items.csv'))} items", file=sys.stderr)
    events = sorted(read_events(folder / "events.csv"), key=lambda e: e.ts)
    events = events[: args.limit] if args.limit else events
    n = publish(prod, event_messages(events), rate=args.rate, total=len(events))
    print(json.dumps({"events_published": n}))
    return 0


def _lines(scenario: str | None, scenarios: tuple[str, ...]) -> Iterator[tuple[str, bytes, bytes]]:
    for line in sys.stdin.buffer:
        raw = line.rstrip(b"\r\n")
        if not raw:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        fields = obj if isinstance(obj, dict) else {}
        scen = scenario or (fields.get("scenario") if fields.get("scenario") in scenarios else scenarios[0])
        yield events_topic(scen), str(fields.get("user_id", "")).encode(), raw


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    prod = producer(_bootstrap(settings), idempotent=not settings.tansu)
    n = publish(prod, _lines(args.scenario, settings.scenarios), progress=False)
    print(json.dumps({"events_published": n}))
    return 0
