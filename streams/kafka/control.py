"""Topics read whole: the compacted catalog, event history for training, and the model control topic
`iu.models`.

The catalog (`iu.items`) and `iu.models` are compacted: the latest record per key is the truth, and a
worker reads them from the beginning when it starts, so that what was published before a restart is
known after it. `iu.models` holds three kinds of record, each a JSON object:
- key `live`: the version every worker serves (`version`, `path`, `previous`: the live record before);
- key `shadow`: the challenger every worker scores beside it (`version` and `path`; `version` null: none);
- key `worker:<url>`: what that worker serves now (`serving`, `shadow`, `rollout`), for `iu model status`.
A model folder must be readable at its `path` by every worker (a shared volume, as a model repository).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from models.data.contract import Item
from streams.core.decode import CatalogRecord, decode_item
from streams.errors import CommandError
from streams.kafka.admin import create_topics, end_offsets_read
from streams.kafka.replay import QUIET, producer
from streams.kafka.topics import ITEMS, MODELS

LIVE, SHADOW, WORKER = "live", "shadow", "worker:"
PROMOTIONS = ("promote", "auto-promote")  # live records' reasons that end the shadow run (and open a rollback window)
NO_SHADOW = {"version": None, "path": None}


@dataclass(frozen=True)
class Deployment:
    """A model version as announced: its version (from the checkpoint) and the folder that holds it."""

    version: str
    path: str

    @classmethod
    def from_json(cls, raw: dict | None) -> Deployment | None:
        return cls(raw["version"], raw["path"]) if raw and raw.get("version") else None


class TopicTail:
    """Reads every partition of a topic from the beginning, then whatever arrives, without a consumer
    group (each reader sees everything). Call from a thread: it blocks up to `timeout` per call."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0, since_ms: int = 0) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"iu-tail-{time.time_ns()}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": QUIET})
        self.bootstrap, self.topic, self.timeout = bootstrap, topic, timeout
        meta = self.consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        self.partitions = [TopicPartition(topic, p, since_ms or 0) for p in meta.partitions]
        if since_ms:  # the first offset at or after the time; -1 (none): the end
            found = self.consumer.offsets_for_times(self.partitions, timeout=timeout)
            self.partitions = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                               for tp in found]
        self.consumer.assign(self.partitions)

    def new(self, exact: bool = False) -> list[tuple[bytes, bytes]]:
        """(key, value) of every record up to the partitions' ends as of now, in offset order per
        partition; [] when nothing arrived since the last call. `exact`: the ends as a fetch reports
        them (`end_offsets_read`: Tansu's ListOffsets may stop short of a multi-record last batch),
        which costs a fetch per partition; records written one per batch (iu.models) need not."""
        ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=self.timeout)[1]
                for tp in self.partitions}
        if exact:
            read = end_offsets_read(self.bootstrap, {(self.topic, p): n for p, n in ends.items()}, self.timeout)
            ends = {p: n for (_, p), n in read.items()}
        positions = {tp.partition: tp.offset for tp in self.consumer.position(self.partitions)}
        behind = {p for p, end in ends.items() if positions.get(p, -1) < end and end > 0}
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + self.timeout
        while behind and time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append((msg.key() or b"", msg.value() or b""))
            if msg.offset() + 1 >= ends[msg.partition()]:
                behind.discard(msg.partition())
        return out

    def close(self) -> None:
        self.consumer.close()


def read_latest(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[bytes, bytes]:
    """The latest value per key of a compacted topic, as of now."""
    tail = TopicTail(bootstrap, topic, timeout)
    try:
        return dict(tail.new(exact=True))
    finally:
        tail.close()


def published_items(bootstrap: str) -> list[Item]:
    """Every item's latest catalog record on the compacted catalog topic (malformed ones were
    dead-lettered when a worker consumed them, and are left out here)."""
    decoded = [decode_item(v) for v in read_latest(bootstrap, ITEMS).values() if v]
    return [d.item for d in decoded if isinstance(d, CatalogRecord)]


def read_since(bootstrap: str, topic: str, since_ms: int = 0, timeout: float = 10.0) -> list[bytes]:
    """The values of every record of `topic` from `since_ms` (a record timestamp; 0: the beginning) to
    the partitions' ends as of now."""
    tail = TopicTail(bootstrap, topic, timeout, since_ms)
    try:
        return [v for _, v in tail.new(exact=True)]
    finally:
        tail.close()


def ensure_models_topic(bootstrap: str) -> None:
    """iu.models, compacted, created if `iu model` runs before any worker did."""
    create_topics(bootstrap, {MODELS: 1}, configs={MODELS: {"cleanup.policy": "compact"}})


def control_records(bootstrap: str, timeout: float = 10.0) -> dict[str, dict]:
    """`iu.models` as it stands: key -> its latest record."""
    ensure_models_topic(bootstrap)
    return {k.decode(): json.loads(v) for k, v in read_latest(bootstrap, MODELS, timeout).items() if v}


def announce(bootstrap: str, key: str, record: dict, timeout: float = 10.0) -> None:
    """Writes one control record and waits until the broker has it."""
    ensure_models_topic(bootstrap)
    p = producer(bootstrap)
    p.produce(MODELS, key=key.encode(), value=json.dumps({**record, "at": time.time()}).encode())
    if p.flush(timeout):
        raise CommandError(f"{MODELS} on {bootstrap} did not take the record within {timeout:.0f} s")


def live_record(deployment: Deployment, previous: Deployment | None, reason: str = "deploy") -> dict:
    """`reason`: deploy, rollback, promote (from shadow; workers may then roll back by themselves,
    IU_ROLLBACK_WINDOW_S), auto-promote or auto-rollback."""
    return {**asdict(deployment), "previous": asdict(previous) if previous else None, "reason": reason}


def announce_live(bootstrap: str, target: Deployment, reason: str,
                  serving: Callable[[], Deployment | None] = lambda: None) -> Deployment | None:
    """Makes `target` live, the version live until now its previous one (before any announcement:
    `serving()`'s); returns that one. A promotion also ends the shadow run."""
    live = Deployment.from_json(control_records(bootstrap).get(LIVE)) or serving()
    if live != target:
        announce(bootstrap, LIVE, live_record(target, live, reason))
    if reason in PROMOTIONS:
        announce(bootstrap, SHADOW, NO_SHADOW)
    return live
