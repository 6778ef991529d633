"""Reading a product topic with plain confluent-kafka, for `iu recs tail` and the demo's summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from streams.kafka.replay import QUIET


def read(bootstrap: str, topic: str, from_beginning: bool = True, idle_timeout: float = 0.0,
         stop: threading.Event | None = None) -> Iterator[bytes]:
    """Message values, in a consumer group of its own that commits nothing, so every reader sees the
    whole topic; ends after `idle_timeout` seconds without a message (0: never) or once `stop` is set
    (another thread's way to end it). Close it when done."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"iu-reader-{time.time_ns()}", "log_level": QUIET,
                  "auto.offset.reset": "earliest" if from_beginning else "latest", "enable.auto.commit": False})
    # Every partition assigned directly, not subscribed: a group join takes librdkafka's session
    # timeout over two on Tansu (~20 s), which left the demo showing no lists for its first 20 s.
    # A topic that does not exist yet is subscribed to, so it is read once a worker creates it.
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    if partitions:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
    else:
        c.subscribe([topic])
    idle_since = time.monotonic()
    try:
        while (not idle_timeout or time.monotonic() - idle_since < idle_timeout) and not (stop and stop.is_set()):
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                idle_since = time.monotonic()
                yield msg.value()
    finally:
        c.close()
