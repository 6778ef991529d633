"""The worker's outputs (recommendation lists, dead letters, drift alarms) through confluent-kafka.

Why not Faust's producer, which the table's changelog keeps using: on Tansu it runs with one record
per produce batch (`producer_max_batch_size=1`, which table recovery needs: `app.broker_options`)
and one batch in flight per partition, so a micro-batch's lists went out a few per broker round trip,
and every send cost Python on the event loop, the thread that also drains the consumer. No part of
the worker reads these topics back, so they need no such workaround: librdkafka batches them and does
the network in its own threads, outside the GIL.

At-least-once is kept as before: a micro-batch is acknowledged only once the broker has acknowledged
everything it sent (`deliver`), and a failure ends the worker uncommitted (streams/delivery.py).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from streams.delivery import DeliveryFailed
from streams.replay import produce, producer


class Sink:
    def __init__(self, bootstrap: str) -> None:
        self.producer = producer(bootstrap)
        self._errors: list[KafkaError] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        produce(self.producer, topic, key, value, headers, self._on_delivery)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def deliver(self, timeout: float) -> None:
        """Blocks until the broker acknowledged every message sent so far (run it off the event loop);
        `DeliveryFailed` on a refused message or past `timeout`."""
        remaining = self.producer.flush(timeout)
        if self._errors:
            raise DeliveryFailed(f"the broker refused a record: {self._errors[0]}")
        if remaining:
            raise DeliveryFailed(f"{remaining} records not acknowledged by the broker within {timeout:g} s")
