"""A micro-batch is done only when everything it produced is on the broker.

Faust's at-least-once rests on committing offsets after `producer.flush()`, but its buffer flush gives
up after 0.1 s without progress (`ProducerBuffer.flush_atmost`) and a failed changelog send is only
logged (`Topic._on_published`). A batch's offsets could then be committed, or its partitions handed
over in a rebalance, while its state records were still in the worker's memory: gone with a kill -9,
and after a rebalance a memory store replays its changelog up to a high watermark that misses them,
over the newer state. Awaiting every record's acknowledgement before the batch is acknowledged
closes that path, at the cost of one broker round trip per batch. (The occasional short runs once
seen in CI had other causes, inside the consumer: see streams/kafka/faust_compat.py and streams/kafka/continuity.py.)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Sequence
from typing import NoReturn

log = logging.getLogger(__name__)

EXIT_UNCOMMITTED = 75  # EX_TEMPFAIL: restart me; nothing from the failed batch was committed


class DeliveryFailed(RuntimeError):
    pass


async def delivered(records: Sequence[Awaitable[object]], timeout: float) -> None:
    """Wait until the broker acknowledged every record; `DeliveryFailed` on an error or past `timeout`."""
    try:
        await asyncio.wait_for(asyncio.gather(*records), timeout)
    except TimeoutError:
        raise DeliveryFailed(f"{len(records)} records not acknowledged by the broker within {timeout:g} s") from None
    except Exception as e:
        raise DeliveryFailed(f"the broker refused a record: {e!r}") from e


def exit_uncommitted(reason: str) -> NoReturn:
    """Faust acknowledges a batch even when the code handling it raises (`take_events` acks in a
    `finally`) and commits acknowledged offsets on a clean stop; the one exit that commits nothing is
    an immediate one. The supervisor restarts the worker and the batch is consumed again."""
    log.critical("exiting without committing the current batch: %s", reason)
    logging.shutdown()
    os._exit(EXIT_UNCOMMITTED)


async def or_exit_uncommitted(work: Awaitable[None]) -> None:
    """Run one batch's handling; any error ends the worker uncommitted instead of acking the batch."""
    try:
        await work
    except Exception as e:
        exit_uncommitted(f"{type(e).__name__}: {e}")
