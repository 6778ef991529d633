"""What differs between the broker profiles (Tansu, Apache Kafka) in the Faust app's settings, and
the mended consumer installed on both (streams/kafka/faust_compat.py)."""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Mapping
from typing import Any

import faust
from faust.types import TP

from streams.kafka.admin import end_offsets_read
from streams.kafka.continuity import Continuity
from streams.kafka.faust_compat import transport
from streams.settings import Settings

# Tansu holds a fetch for the whole wait: 25 ms keeps the wait under every event's latency short while
# fetches stay few enough for the consumer thread (ops/bench/RESULTS.md, the fetch-wait runs).
TANSU_FETCH_WAIT_MS = 25
TANSU_SESSION_TIMEOUT_S = 2.0


def broker_options(settings: Settings) -> dict[str, Any]:
    """The consumer group's session timeout, and heartbeats at a quarter of it: how long the group
    waits for a worker that died before its partitions go to the others. On Tansu quick joins (2 s)
    are the default; on Kafka Faust's (60 s), and the broker allows no less than its
    group.min.session.timeout.ms (6 s by default)."""
    timeout = settings.session_timeout_s or (TANSU_SESSION_TIMEOUT_S if settings.tansu else 0)
    return {"broker_session_timeout": timeout, "broker_heartbeat_interval": timeout / 4} if timeout else {}


def tune_transport(app: faust.App, settings: Settings, continuity: Continuity | None = None,
                   topics: Collection[str] = ()) -> None:
    """The mended consumer on every profile, with Tansu's short fetch wait there; Faust has no setting
    for either. Given `continuity`, each seek anchors it for `topics` and commits stop at its
    expectations. Call before declaring topics."""
    wait_ms = TANSU_FETCH_WAIT_MS if settings.tansu else None
    ends = (functools.partial(end_offsets_read, ",".join(f"{url.host}:{url.port}" for url in app.conf.broker))
            if settings.tansu else None)
    if continuity is None:
        app.transport = transport(app, wait_ms, end_offsets=ends)
        return

    def on_seek(targets: Mapping[TP, int]) -> None:
        continuity.anchor({tp: n for tp, n in targets.items() if tp.topic in topics}, time.monotonic())

    app.transport = transport(app, wait_ms, on_seek, continuity.committable, ends)
