"""Faust's aiokafka transport, with the one consumer knob Faust hard-codes: the fetch wait.

Faust asks the broker to hold each fetch up to 1.5 s for data. Apache Kafka answers as soon as a
record arrives, so that costs nothing there; Tansu holds the request for the whole wait even while
records arrive, which put ~400 ms of pure waiting under every event's latency at 500 events/s
(measured: fetch p50 403 ms at a 1,500 ms wait, 10 ms at a 10 ms wait). The embedded profile
therefore polls with a short wait; the production profile keeps Faust's.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


def transport(app: faust.App, fetch_max_wait_ms: int) -> driver.Transport:
    """The app's consumer transport, its fetches waiting at most `fetch_max_wait_ms` at the broker."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # private: read by AIOKafkaConsumer.start()
            return consumer

    class ShortWaitConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class ShortWaitTransport(driver.Transport):
        Consumer = ShortWaitConsumer

    return ShortWaitTransport(app.conf.broker_consumer, app)
