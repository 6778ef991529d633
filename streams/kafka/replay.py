"""Producing to the product's topics with plain confluent-kafka, as any producer would.

Keys are user ids (item ids on the catalog topic) and the partitioner is murmur2, Java's default and
the one Faust's table changelog uses: a user's events and state must hash to the same partition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict

from confluent_kafka import Producer
from tqdm import tqdm

from models.data.contract import Event, Item
from streams.kafka.topics import ITEMS, events_topic

QUIET = 4  # librdkafka warnings and worse; its info lines ("Disconnected" when a broker stops) are noise here


def producer(bootstrap: str, idempotent: bool = False) -> Producer:
    """`idempotent` on Apache Kafka: a send retried after a broker fails is neither written twice nor
    put out of order, so every record keeps the offset it would have had. Tansu has no idempotent
    producers."""
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5, "acks": "all",
                     "enable.idempotence": idempotent, "queue.buffering.max.messages": 1_000_000,
                     "log_level": QUIET})


def item_json(it: Item) -> bytes:
    return json.dumps({"item_id": it.item_id, "title": it.title, "categories": list(it.categories)}).encode()


def event_json(e: Event) -> bytes:
    return json.dumps(asdict(e)).encode()


def publish_catalog(p: Producer, items: list[Item]) -> int:
    for it in items:
        _produce(p, ITEMS, it.item_id.encode(), item_json(it))
    p.flush(30)
    return len(items)


def publish(p: Producer, messages: Iterable[tuple[str, bytes, bytes]], rate: float = 0.0,
            total: int | None = None, progress: bool = True) -> int:
    """(topic, key, value) at `rate` messages/s (0: as fast as the client goes); how many were sent."""
    start, n = time.perf_counter(), 0
    try:
        for topic, key, value in tqdm(messages, total=total, unit="ev", disable=not progress, mininterval=0.5):
            if rate > 0:
                ahead = start + n / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            _produce(p, topic, key, value)
            n += 1
    finally:  # on Ctrl-C or SIGTERM too: what was sent so far is delivered, not dropped with the client's queue
        remaining = p.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} messages were not delivered within 60 s")
    return n


def event_messages(events: Iterable[Event]) -> Iterator[tuple[str, bytes, bytes]]:
    for e in events:
        yield events_topic(e.scenario), e.user_id.encode(), event_json(e)


def _produce(p: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            p.produce(topic, value=value, key=key)
            p.poll(0)
            return
        except BufferError:  # local queue full: let deliveries drain
            p.poll(0.1)
