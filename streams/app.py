"""The Faust app: topics, the user-state table, the agents and the HTTP views.

The agents are thin: they turn micro-batches of consumed messages into `Record`s, read the touched
users' state from the table, hand the heavy work (encoder, Milvus) to one worker thread so the event
loop keeps heartbeating, then write states and produce outputs. Offsets are acknowledged only after
that (at-least-once); the state's watermarks make redelivery harmless.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP

from streams import metrics
from streams.batching import Linger
from streams.broker import end_offsets_read, present_offsets
from streams.continuity import Continuity, Present
from streams.decode import CatalogRecord, Rejected, decode_item
from streams.delivery import delivered, or_exit_uncommitted
from streams.monitor import Monitor
from streams.processor import DeadLetter, Processor, Record
from streams.routing import Admission, owner_route, unavailable
from streams.settings import Settings
from streams.tablescan import TableSize, digest
from streams.topics import DEAD_LETTERS, DRIFT, ITEMS, RECOMMENDATIONS, TABLE, events_topic, partition_of
from streams.transport import transport

log = logging.getLogger(__name__)

# Tansu holds a fetch for the whole wait (streams/transport.py). 25 ms, not 10: fewer fetch round trips
# for the consumer thread to hold the GIL through; p99 at 1,000 events/s 378-456 vs 537-818 ms in
# alternating runs (ops/bench/RESULTS.md, 2026-12-01).
TANSU_FETCH_WAIT_MS = 25
GAUGE_INTERVAL_S = 2.0
TAKE_WITHIN_S = 0.02  # Faust's take yields what came in within this; Linger adds the rest
TANSU_SESSION_TIMEOUT_S = 2.0
RAW = {"key_type": bytes, "value_type": bytes}  # serialized "raw": the app's default, see build_app


def broker_options(settings: Settings) -> dict[str, Any]:
    """The consumer group's session timeout, and heartbeats at a quarter of it: how long the group
    waits for a worker that died before its partitions go to the others. On Tansu quick joins (2 s)
    are the default; on Kafka Faust's (60 s), and the broker allows no less than its
    group.min.session.timeout.ms (6 s by default)."""
    timeout = settings.session_timeout_s or (TANSU_SESSION_TIMEOUT_S if settings.tansu else 0)
    return {"broker_session_timeout": timeout, "broker_heartbeat_interval": timeout / 4} if timeout else {}


def tune_transport(app: faust.App, settings: Settings, continuity: Continuity | None = None,
                   topics: Collection[str] = ()) -> None:
    """The mended consumer (streams/transport.py) on every profile, with Tansu's short fetch wait
    there; Faust has no setting for either. Given `continuity`, each seek anchors it for `topics`
    and commits stop at its expectations. Call before declaring topics."""
    wait_ms = TANSU_FETCH_WAIT_MS if settings.tansu else None
    ends = (functools.partial(end_offsets_read, ",".join(f"{url.host}:{url.port}" for url in app.conf.broker))
            if settings.tansu else None)
    if continuity is None:
        app.transport = transport(app, wait_ms, end_offsets=ends)
        return

    def on_seek(targets: Mapping[TP, int]) -> None:
        continuity.anchor({tp: n for tp, n in targets.items() if tp.topic in topics}, time.monotonic())

    app.transport = transport(app, wait_ms, on_seek, continuity.committable, ends)


@dataclass
class Stats:
    """Exact counters for /stats, which the demo and the tests wait on; Prometheus has the rest."""

    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)

    def as_json(self) -> dict:
        return {**self.counts, "uptime_s": round(time.time() - self.started, 3)}


def _record(event: faust.types.EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.key, m.value or b"", int(m.timestamp * 1000))


def build_app(settings: Settings, bootstrap: str, processor: Processor, replication: int = 1) -> faust.App:
    """`replication`: the replication factor of topics Faust would create itself (prepare_topics's)."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        store=settings.store,
        datadir=str(settings.state_dir),  # not Faust's default, ./<app_id>-data in the cwd
        processing_guarantee=settings.guarantee,
        topic_partitions=settings.partitions,
        web_bind=settings.web_host,
        web_host=settings.advertised_host,  # Faust's canonical URL: what other workers proxy requests to
        topic_replication_factor=replication,
        web_port=settings.web_port,
        key_serializer="raw",  # topics and table alike: state values are our own compact bytes
        value_serializer="raw",
        # the documented API only: Faust's /router and /table views would serve raw state to anyone
        web_router_enabled=False, web_tables_enabled=False, web_graph_enabled=False, web_stats_enabled=False,
        **broker_options(settings),
    )
    continuity = Continuity()  # next offset to process per partition: also the lag gauge's baseline
    consumed = {*processor.topic_index, ITEMS}  # the agents' topics (Faust also assigns its leader topic)
    tune_transport(app, settings, continuity, consumed)
    events = app.topic(*(events_topic(s) for s in settings.scenarios), **RAW)
    event_topics = {events_topic(s): app.topic(events_topic(s), partitions=settings.partitions, **RAW)
                    for s in settings.scenarios}  # to send a misrouted event again
    items = app.topic(ITEMS, **RAW)
    recommendations = app.topic(RECOMMENDATIONS, partitions=settings.partitions, **RAW)
    dead_letters = app.topic(DEAD_LETTERS, partitions=1, **RAW)
    # use_partitioner: the changelog partition is the key's hash (murmur2, as producers must key too),
    # which lets a micro-batch write its users outside per-event stream iteration.
    table = app.Table(TABLE, default=None, partitions=settings.partitions, use_partitioner=True, **RAW)
    drift = app.topic(DRIFT, partitions=1, **RAW)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iu-compute")  # torch + Milvus, one at a time
    stats = Stats()
    size = TableSize(table)
    admission = Admission(settings.http_queue)
    monitor = Monitor(settings.scenarios, {events_topic(s): s for s in settings.scenarios}, settings.top_k,
                      settings.quality_window, settings.monitor_users, processor.encoder.cfg.max_len,
                      processor.catalog.categories)
    metrics.MODEL.info({"model_version": processor.encoder.model_version, "device": str(processor.encoder.device),
                        "dim": str(processor.dim), "max_len": str(processor.encoder.cfg.max_len)})

    async def refetch(partitions: dict[TP, int], reason: str) -> None:
        for tp, offset in partitions.items():
            log.warning("fetching %s:%d again from offset %d (%s): records past it were lost before the agent",
                        tp.topic, tp.partition, offset, reason)
            metrics.REFETCHES.labels(reason).inc()
        if partitions:  # in the consumer's own thread, as Faust's recovery seeks
            await app.consumer.seek_wait(partitions)

    async def present(ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, Present]:
        """What the broker holds in each partition's [low, high): see streams/continuity.py."""
        answer = await asyncio.to_thread(present_offsets, bootstrap, ranges)
        return {TP(*tp): Present(ranges[TP(*tp)][0], reach, tuple(found)) for tp, (reach, found) in answer.items()}

    def skipped(counts: Mapping[TP, int]) -> None:
        for tp, n in counts.items():
            log.info("%s:%d: %d offsets hold no record (transaction markers, deleted or compacted records)",
                     tp.topic, tp.partition, n)
            metrics.OFFSETS_SKIPPED.inc(n)
            stats.counts["offsets_skipped"] += n

    async def admitted(batch: Sequence[faust.types.EventT]) -> list[Record]:
        records = [_record(e) for e in batch]
        admission = continuity.admit(records)
        if admission.refetch:  # a gap: a loss, or offsets that hold no record? The broker knows
            admission = continuity.admit(records, await present(admission.gaps()))
        skipped(admission.skipped)
        await refetch(admission.refetch, "gap")
        return admission.records

    async def stalled(positions: Mapping[TP, int]) -> None:
        """Partitions fetched past their expectation that have not moved: passed over up to the
        position where nothing in between holds a record, fetched again where something does."""
        stuck = continuity.stalled(positions, time.monotonic())
        if not stuck:
            return
        known = await present({tp: (want, positions[tp]) for tp, want in stuck.items()})
        empty = {tp for tp, want in stuck.items() if known[tp].empty_between(want, positions[tp])}
        skipped({tp: continuity.skip(tp, positions[tp], time.monotonic()) for tp in empty})
        await refetch({tp: want for tp, want in stuck.items() if tp not in empty}, "stall")

    async def offload(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def dead_letter(letters: list[DeadLetter]) -> list[Awaitable[object]]:
        sent = []
        for d in letters:
            sent.append(await dead_letters.send(key=d.key, value=d.value, headers=d.headers()))
            metrics.DEAD_LETTERS.labels(d.reason.value).inc()
        return sent

    async def reroute(records: list[Record], owner: Mapping[bytes, int]
                      ) -> tuple[list[Record], list[Awaitable[object]]]:
        """Events on another partition than their key's `owner` partition (a producer not on the
        murmur2 partitioner) would split a user's state across partitions and workers: each is
        produced again to its key's partition, where its owner applies it, and counted. Returns the
        others (keyless events among them: they are dead-lettered)."""
        own: list[Record] = []
        sent: list[Awaitable[object]] = []
        for r in records:
            if r.key is None or owner[r.key] == r.partition:
                own.append(r)
                continue
            sent.append(await event_topics[r.topic].send(key=r.key, value=r.value, partition=owner[r.key],
                                                         headers=[("iu.rerouted_from", f"{r.partition}:{r.offset}"
                                                                   .encode())]))
            metrics.MISROUTED.labels(r.topic).inc()
        return own, sent

    async def update_batch(stream: faust.StreamT, batch: Sequence[faust.types.EventT]) -> None:
        consumed = await admitted(batch)
        if not consumed:
            return
        owner = {k: partition_of(k, settings.partitions) for k in {r.key for r in consumed if r.key}}  # per user
        records, sent = await reroute(consumed, owner)
        stored = {k.decode(errors="replace"): table.get(k) for k in {r.key for r in records if r.key}}
        result = await offload(processor.process, records, stored)
        with metrics.stage("table"):
            # The RocksDB store files a write under the partition of the event being processed,
            # which a batch does not have: each user's write runs as that user's last event on the
            # user's own partition. Store and changelog are written apart (what `table[key] = raw`
            # does) to keep the send.
            last = {e.message.key: e for e in batch if owner.get(e.message.key) == e.message.partition}
            current = stream.current_event
            for uid, raw in result.states.items():
                key = uid.encode()
                stream._set_current_event(last[key])  # private: Faust has no public setter
                table.data[key] = raw
                sent.append(table.send_changelog(None, key, raw))
            stream._set_current_event(current)  # the take buffer reads it back
        with metrics.stage("monitor"):
            detections = monitor.observe(result, len(records))
        with metrics.stage("produce"):
            for key, value in result.recommendations:
                sent.append(await recommendations.send(key=key, value=value))
            sent += await dead_letter(result.dead_letters)
            for d in detections:
                sent.append(await drift.send(key=d.detector.encode(), value=json.dumps(d.as_dict()).encode()))
        with metrics.stage("deliver"):
            await delivered(sent, settings.delivery_timeout_s)
        continuity.processed(consumed, time.monotonic())
        stats.counts.update({"events_in": len(consumed), "recommendations_out": len(result.recommendations),
                             "withheld": result.withheld, "batches": 1, "misrouted": len(consumed) - len(records),
                             **result.outcomes})

    async def update_items(batch: Sequence[faust.types.EventT]) -> None:
        records = await admitted(batch)
        decoded = [(r, decode_item(r.value)) for r in records]
        good = [it for _, it in decoded if isinstance(it, CatalogRecord)]
        if good:
            await offload(processor.add_items, [it.item for it in good])
        rejected = [DeadLetter(r, it.reason, it.detail) for r, it in decoded if isinstance(it, Rejected)]
        await delivered(await dead_letter(rejected), settings.delivery_timeout_s)
        continuity.processed(records, time.monotonic())
        clipped = sum(it.clipped for it in good)
        metrics.TITLES_CLIPPED.inc(clipped)
        stats.counts.update({"items_in": len(records), "items_applied": len(good), "titles_clipped": clipped})

    @app.agent(events)
    async def update_interests(stream: faust.StreamT) -> None:
        linger = Linger(settings.batch_target, settings.batch_wait_ms / 1000, TAKE_WITHIN_S)
        async for batch in stream.take_events(settings.batch_size, within=TAKE_WITHIN_S):
            started = time.monotonic()
            await or_exit_uncommitted(update_batch(stream, batch))
            await asyncio.sleep(linger.pause(len(batch), started, time.monotonic()))

    @app.agent(items)
    async def update_catalog(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(1024, within=0.2):
            await or_exit_uncommitted(update_items(batch))

    @app.timer(interval=GAUGE_INTERVAL_S)
    async def refresh_gauges() -> None:
        """Gauges that are cheaper to read now and then than to keep exact on every write."""
        await asyncio.to_thread(size.scan)  # every value: off the loop (streams/tablescan.py)
        metrics.USERS.set(size.scanned_users)
        metrics.STATE_BYTES.set(size.state_bytes)
        metrics.CATALOG.set(len(processor.catalog))
        await offload(processor.vectors.flush)  # converge after an outage even when no events come
        if app.consumer is None:
            return
        metrics.LAG.clear()  # partitions revoked since the last refresh must disappear
        positions = {}
        for tp in app.consumer.assignment():
            if tp.topic not in consumed:
                continue
            positions[tp] = await app.consumer.position(tp) or 0
            high = app.consumer.highwater(tp) if tp.topic in processor.topic_index else None
            if high is not None and high >= 0:
                done = continuity.expected.get(tp, positions[tp])  # before the first seek anchors it: position
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(high - done, 0))
        if not (app.rebalancing or app.in_recovery):  # recovery seeks every partition itself
            await stalled(positions)

    @app.page("/metrics")
    async def metrics_view(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body, content_type = metrics.exposition()
        return self.bytes(body, headers={"Content-Type": content_type})  # aiohttp rejects a charset in content_type

    @app.page("/health")
    async def health(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()) if app.consumer else []
        ready = bool(assigned) and not app.rebalancing and not app.in_recovery
        store = processor.vectors.status()
        status = "starting" if not ready else "ok" if store["up"] else "degraded"  # consuming, lists withheld
        return self.json({"status": status, "ready": ready, "assigned": assigned, "vector_store": store,
                          "model_version": processor.encoder.model_version, "users": size.users},
                         status=200 if ready else 503)

    @app.page("/stats")
    async def stats_view(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # next_offsets: where each event partition stands; one that stops moving while others do is stalled
        return self.json({**stats.as_json(), "users": size.users, "items": len(processor.catalog),
                          "quality": monitor.summary(),
                          "next_offsets": {f"{tp.topic}:{tp.partition}": n
                                           for tp, n in sorted(continuity.expected.items()) if tp.topic != ITEMS}})

    def error(view: faust.web.View, found: dict) -> faust.web.Response:
        if found["status"] == 503:
            return unavailable(view, found["error"])
        return view.json(found, status=found["status"])

    async def ranked_for(request: faust.web.Request, user_id: str) -> tuple[Any, str, Any] | dict:
        """The user's state, the target scenario and a fresh ranking; or an error body with its status."""
        raw = table.get(user_id.encode())
        if raw is None:
            return {"error": f"no events for user {user_id!r}", "status": 404}
        state = processor.load_state(raw)
        scen = request.query.get("scenario")
        if scen is None:  # the scenario of the user's latest event
            scen = processor.encoder.cfg.scenarios[int(state.ring["scen"][-1]) - 1]
        if scen not in processor.scen_index:
            return {"error": f"unknown scenario {scen!r}", "status": 400}
        with admission.slot() as admitted:
            if not admitted:
                metrics.HTTP_REJECTED.inc()
                return {"error": f"{settings.http_queue} requests are waiting for this worker; retry shortly",
                        "status": 503}
            [ranked] = await offload(processor.rank, [(user_id, state, scen)], False)
        if ranked is None:
            return {"error": "the vector store is unavailable; retry shortly", "status": 503}
        return state, scen, ranked

    # Users live on the worker that owns their partition: another worker proxies the request there.
    @app.page("/users/{user_id}/recommendations")
    @owner_route(app, table, "user_id")
    async def recommendations_view(
        self: faust.web.View, request: faust.web.Request, user_id: str
    ) -> faust.web.Response:
        found = await ranked_for(request, user_id)
        if isinstance(found, dict):
            return error(self, found)
        _, scen, ranked = found
        return self.json({"user_id": user_id, "scenario": scen, "model_version": processor.encoder.model_version,
                          "items": [{"item_id": i, "score": round(s, 5), "title": processor.catalog.titles.get(i, "")}
                                    for i, s in ranked.items]})

    @app.page("/users/{user_id}/interest")
    @owner_route(app, table, "user_id")
    async def interest_view(self: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        found = await ranked_for(request, user_id)
        if isinstance(found, dict):
            return error(self, found)
        state, scen, ranked = found
        names = processor.encoder.view_names
        counts = [None, *state.views.count.tolist()]  # the transformer view has no count of its own
        return self.json({
            "user_id": user_id, "scenario": scen, "events_applied": state.applied, "events_skipped": state.skipped,
            "recent_items": [{"item_id": i, "ts": int(r["ts"]), "title": processor.catalog.titles.get(i, "")}
                             for i, r in zip(state.items, state.ring, strict=True)][::-1],
            "views": {n: {"weight": round(float(w), 5), "events": c} for n, w, c in
                      zip(names, ranked.weights, counts, strict=True)},
            "fused": [round(float(x), 5) for x in ranked.fused],
        })

    @app.page("/state/digest")
    async def digest_view(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Hashes over this worker's user states, to compare runs (streams/tablescan.py)."""
        return self.json(await asyncio.to_thread(digest, table, processor.load_state))

    return app
