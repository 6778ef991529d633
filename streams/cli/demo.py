"""`iu demo`: the whole product on embedded defaults, in one command.

Broker, milvus-lite, a model (a small one is trained when none exists), a real worker process and a
replay of ml-100k, watched live; then users' lists before and after their latest event and a summary
measured from the recommendation topic itself. Ctrl-C stops the worker and the broker before it exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
from confluent_kafka import Producer
from rich.console import Console
from rich.live import Live

from models.data.contract import Event, read_events, read_items
from streams.cli.dashboard import Snapshot, live_panel, shift_table
from streams.cli.datasets import resolve
from streams.errors import WorkerError
from streams.kafka.admin import prepare_topics
from streams.kafka.broker import broker_for, free_port, port_open
from streams.kafka.replay import event_messages, producer, publish, publish_catalog
from streams.settings import Settings
from streams.testing.recwatch import RecommendationWatcher
from streams.testing.supervise import WorkerProcess
from streams.worker.heap import settle_heap


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    d = sub.add_parser(
        "demo",
        help="run everything end to end on embedded defaults and print a summary",
        description="Starts the embedded broker (unless IU_KAFKA_BOOTSTRAP is set), trains a small model "
        f"if {settings.model_path} has none, starts a worker process, replays ml-100k in time order and "
        "reads the recommendations back from iu.recommendations, with a live view of events/s, lag, "
        "end-to-end latency (ingest → recommendation emitted), online hit rate@K of our lists against a "
        "popularity baseline on the same events, drift detections and dead letters. At the end: three users' "
        "lists before and after their latest event, with titles, and a summary. Ctrl-C stops everything.",
        formatter_class=fmt,
    )
    d.add_argument("--events", type=int, default=20_000, help="events to replay (ml-100k has 100,000)")
    d.add_argument("--rate", type=float, default=500.0,
                   help="events per second: a pace one worker keeps up with on 2 cores, so the latency shown is "
                   "per event, not queueing (0: as fast as possible, which shows throughput instead)")
    d.add_argument("--epochs", type=int, default=30,
                   help="training epochs when a model must be trained first (at 10, its lists lose to popularity)")
    d.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    d.add_argument("--timeout", type=float, default=600.0, help="give up waiting for the worker after this long")
    d.set_defaults(func=_demo)


def _say(args: argparse.Namespace, msg: str) -> None:
    print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)


def _ensure_model(args: argparse.Namespace, settings: Settings) -> None:
    if (settings.model_path / "model.safetensors").exists():
        return
    _say(args, f"no model in {settings.model_path}: training one ({args.epochs} epochs)")
    subprocess.run([sys.executable, "-m", "streams.cli", "train", "--dataset", "ml-100k", "--epochs",
                    str(args.epochs), "--out", str(settings.model_path)], check=True, stdout=sys.stderr)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    folder = resolve("ml-100k", settings)
    _ensure_model(args, settings)
    items = read_items(folder / "items.csv")
    titles = {it.item_id: it.title for it in items}
    events = sorted(read_events(folder / "events.csv"), key=lambda e: e.ts)[: args.events]
    port = settings.web_port if not port_open(settings.web_host, settings.web_port) else free_port()
    with broker_for(settings) as bootstrap:
        prepare_topics(settings, bootstrap)
        env = {"IU_KAFKA_BOOTSTRAP": bootstrap, "IU_BROKER_PROFILE": "tansu" if settings.tansu else "kafka",
               "IU_WEB_PORT": str(port)}
        log = settings.data_dir.parent / "demo" / "worker.log"
        _say(args, f"broker {bootstrap}; worker on http://{settings.web_host}:{port} (log {log})")
        with WorkerProcess(env, log) as worker:
            prod = producer(bootstrap)
            publish_catalog(prod, items)
            watcher = RecommendationWatcher(bootstrap)
            watcher.start()
            settle_heap()  # the publisher's pauses would come back as bursts of load
            feeder = Feeder(prod, events, args.rate)
            feeder.start()
            t0 = time.monotonic()
            try:
                stats = _follow(args, settings, worker, feeder, watcher, len(events))
            finally:  # also on Ctrl-C, which _follow turns into stats=None with further Ctrl-Cs ignored
                feeder.stop()
                watcher.stop()
    if stats is None:
        _say(args, "interrupted: the worker and the broker are stopped")
        return 130
    _show_shifts(args, watcher, {e.event_id: e for e in events}, titles)
    summary = _summary(stats, watcher, time.monotonic() - t0, settings.top_k)
    if args.json:
        print(json.dumps(summary))
    else:
        _say(args, "\n" + "\n".join(f"{k:>32}: {v}" for k, v in summary.items()))
    return 0


class Feeder(threading.Thread):
    """Publishes the replay in the background, so the live view can watch it being consumed."""

    def __init__(self, prod: Producer, events: list[Event], rate: float) -> None:
        super().__init__(name="iu-feeder", daemon=True)
        self.prod, self.events, self.rate = prod, events, rate
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            publish(self.prod, self._counted(), rate=self.rate, progress=False)
        except BaseException as e:  # reported by the thread that watches
            self.error = e

    def _counted(self) -> Iterator[tuple[str, bytes, bytes]]:
        for message in event_messages(self.events):
            if self._halt.is_set():
                return
            self.sent += 1
            yield message

    def stop(self) -> None:
        self._halt.set()
        self.join(90)


def _follow(args: argparse.Namespace, settings: Settings, worker: WorkerProcess, feeder: Feeder,
            watcher: RecommendationWatcher, total: int) -> dict | None:
    """Polls the worker until every event is consumed and every list it emitted has been read back,
    drawing the live panel meanwhile; None on Ctrl-C (after which cleanup is not interruptible)."""
    deadline = time.monotonic() + args.timeout
    t0 = time.monotonic()
    rates: deque[tuple[float, int]] = deque(maxlen=8)
    stats: dict = {}
    with Live(console=Console(stderr=args.json), refresh_per_second=4, transient=args.json) as live:
        try:
            while time.monotonic() < deadline:
                if feeder.error is not None:
                    raise WorkerError(f"publishing the replay failed: {feeder.error}")
                stats = worker.get("/stats")
                consumed = stats.get("events_in", 0)
                rates.append((time.monotonic(), consumed))
                if not args.json:
                    live.update(live_panel(_snapshot(stats, feeder, watcher, total, rates, t0), settings.top_k))
                if consumed >= total and watcher.count >= stats.get("recommendations_out", 0):
                    return stats
                time.sleep(0.5)
        except KeyboardInterrupt:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second one must not orphan the worker
                signal.signal(sig, signal.SIG_IGN)
            # Said at once: the worker's graceful stop (commit, flush, leave the group) takes seconds.
            live.console.print("Ctrl-C: stopping the worker, then the broker (10-20 s)...")
            return None
    raise WorkerError(f"the worker consumed {stats.get('events_in', 0)} of {total} events in {args.timeout:.0f} s "
                      "(--timeout); its log says why")


def _snapshot(stats: dict, feeder: Feeder, watcher: RecommendationWatcher, total: int,
              rates: deque[tuple[float, int]], t0: float) -> Snapshot:
    (t_a, n_a), (t_b, n_b) = rates[0], rates[-1]
    p50, p99 = watcher.recent_percentiles()
    quality = stats.get("quality", {})
    return Snapshot(
        elapsed_s=time.monotonic() - t0, published=feeder.sent, total=total, consumed=stats.get("events_in", 0),
        events_per_s=(n_b - n_a) / (t_b - t_a) if t_b > t_a else 0.0, p50_ms=p50, p99_ms=p99,
        hit_ours=quality.get("hit_rate_ours", 0.0), hit_popularity=quality.get("hit_rate_popularity", 0.0),
        trials=quality.get("trials", 0), drift=sum(quality.get("drift", {}).values()),
        dead_letters=_dead_letters(stats), lists=watcher.count, users=stats.get("users", 0))


def _dead_letters(stats: dict) -> int:
    return sum(v for k, v in stats.items() if k.startswith("dead_letter:"))


def _show_shifts(args: argparse.Namespace, watcher: RecommendationWatcher, events: dict[str, Event],
                 titles: dict[str, str]) -> None:
    """Three users whose latest event moved their list the most: the real-time part, made visible."""
    console = Console(stderr=args.json)
    for user, before, after in watcher.shifted_users(3):
        e = events.get(after.trigger_event_id)
        latest = f"{e.action} on {titles.get(e.item_id, e.item_id)} ({e.scenario})" if e else after.trigger_event_id
        console.print()
        console.print(shift_table(user, latest, [titles.get(i, i) for i in before.item_ids],
                                  [titles.get(i, i) for i in after.item_ids]))


def _summary(stats: dict, watcher: RecommendationWatcher, elapsed_s: float, top_k: int) -> dict:
    """`elapsed_s`: from the first event published to the last list read back."""
    latency = np.array(watcher.latencies_ms or [0.0])
    quality = stats["quality"]
    return {
        "events_in": stats.get("events_in", 0),
        "applied": stats.get("applied", 0) + stats.get("late", 0),
        "late": stats.get("late", 0),
        "duplicates_skipped": stats.get("duplicate", 0) + stats.get("redelivered", 0),
        "dlq": _dead_letters(stats),
        "recommendations_out": watcher.count,
        "users": len(watcher.lists),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "throughput_events_per_s": round(stats.get("events_in", 0) / max(elapsed_s, 1e-9), 1),
        "batches": stats.get("batches", 0),
        # Prequential: each event scored against the list emitted for its user and scenario before it.
        "online_trials": quality["trials"],
        f"online_hit_rate@{top_k}_ours": quality["hit_rate_ours"],
        f"online_hit_rate@{top_k}_popularity": quality["hit_rate_popularity"],
        "drift_detections": quality["drift"],
    }
