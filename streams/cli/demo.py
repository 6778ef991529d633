"""`iu demo`: the whole product on embedded defaults, in one command.

Broker, milvus-lite, a model (a small one is trained when none exists), a real worker process,
a replay of ml-100k, then a summary measured from the recommendation topic itself.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import time

import numpy as np

from models.data.contract import read_events, read_items
from streams.app import prepare_topics
from streams.broker import broker_for, free_port, port_open
from streams.cli.datasets import resolve
from streams.reader import read
from streams.replay import event_messages, producer, publish, publish_catalog
from streams.settings import Settings
from streams.supervise import WorkerProcess
from streams.topics import RECOMMENDATIONS


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    d = sub.add_parser(
        "demo",
        help="run everything end to end on embedded defaults and print a summary",
        description="Starts the embedded broker (unless IU_KAFKA_BOOTSTRAP is set), trains a small model "
        f"if {settings.model_path} has none, starts a worker process, replays ml-100k in time order and "
        "reads the recommendations back from iu.recommendations. Prints throughput, end-to-end latency "
        "(ingest → recommendation emitted), counts, online hit rate@K of our lists against a popularity "
        "baseline on the same events, drift detections, and a few users' recommendations with titles.",
        formatter_class=fmt,
    )
    d.add_argument("--events", type=int, default=20_000, help="events to replay (ml-100k has 100,000)")
    d.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    d.add_argument("--epochs", type=int, default=10, help="training epochs when a model must be trained first")
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
    titles = {it.item_id: it.title for it in read_items(folder / "items.csv")}
    events = sorted(read_events(folder / "events.csv"), key=lambda e: e.ts)[: args.events]
    port = settings.web_port if not port_open(settings.web_host, settings.web_port) else free_port()
    with broker_for(settings, announce=False) as bootstrap:
        prepare_topics(settings, bootstrap)
        env = {"IU_KAFKA_BOOTSTRAP": bootstrap, "IU_BROKER_PROFILE": "tansu" if settings.tansu else "kafka",
               "IU_WEB_PORT": str(port)}
        log = settings.data_dir.parent / "demo" / "worker.log"
        _say(args, f"broker {bootstrap}; worker on http://{settings.web_host}:{port} (log {log})")
        with WorkerProcess(env, log) as worker:
            prod = producer(bootstrap)
            publish_catalog(prod, read_items(folder / "items.csv"))
            t0 = time.time()
            publish(prod, event_messages(events), rate=args.rate, total=len(events), progress=not args.json)
            stats = worker.wait_for(lambda s: s.get("events_in", 0) >= len(events), args.timeout,
                                    f"{len(events)} events processed")
            elapsed = time.time() - t0
            with contextlib.closing(read(bootstrap, RECOMMENDATIONS, idle_timeout=60)) as values:
                recs = [json.loads(v) for v in itertools.islice(values, stats.get("recommendations_out", 0))]
    latency = np.array([r["emitted_ts"] - r["ingest_ts"] for r in recs] or [0.0])
    latest = {r["user_id"]: r for r in recs}
    quality = stats["quality"]
    summary = {
        "events_in": stats.get("events_in", 0),
        "applied": stats.get("applied", 0) + stats.get("late", 0),
        "late": stats.get("late", 0),
        "duplicates_skipped": stats.get("duplicate", 0) + stats.get("redelivered", 0),
        "dlq": sum(v for k, v in stats.items() if k.startswith("dead_letter:")),
        "recommendations_out": len(recs),
        "users": len(latest),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "throughput_events_per_s": round(stats.get("events_in", 0) / max(elapsed, 1e-9), 1),
        "batches": stats.get("batches", 0),
        # Prequential: each event scored against the list emitted for its user and scenario before it.
        "online_trials": quality["trials"],
        f"online_hit_rate@{settings.top_k}_ours": quality["hit_rate_ours"],
        f"online_hit_rate@{settings.top_k}_popularity": quality["hit_rate_popularity"],
        "drift_detections": quality["drift"],
        "model_version": recs[0]["model_version"] if recs else None,
    }
    for uid in list(latest)[:3]:
        r = latest[uid]
        _say(args, f"\nuser {uid} ({r['scenario']}, after event {r['trigger_event_id']}):")
        for it in r["items"]:
            _say(args, f"  {it['score']:8.3f}  {titles.get(it['item_id'], it['item_id'])}")
    if args.json:
        print(json.dumps(summary))
    else:
        _say(args, "\n" + "\n".join(f"{k:>24}: {v}" for k, v in summary.items()))
    return 0
