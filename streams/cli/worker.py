"""`iu worker`: the Faust worker that keeps user interests and recommendations current."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.broker import announce
from streams.errors import WorkerError
from streams.kafka.admin import prepare_topics
from streams.kafka.broker import cluster_id, local_broker, port_open
from streams.settings import Settings
from streams.worker.heap import settle_heap, time_collections


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    w = sub.add_parser(
        "worker",
        help="run the streaming worker: events in, interests and recommendations out",
        description="Consume iu.events.<scenario> and iu.items, update each user's multi-view interest "
        "state, upsert user vectors into Milvus and emit recommendations to iu.recommendations. "
        "Without IU_KAFKA_BOOTSTRAP it uses the local embedded Tansu broker (`iu broker`), started if none "
        "runs, and prints its address. "
        f"HTTP on {settings.web_host}:{settings.web_port}: /health, /stats, /users/ID/recommendations, "
        "/users/ID/interest. Stop with Ctrl-C (or SIGTERM): offsets and state are committed first.",
        formatter_class=fmt,
    )
    w.add_argument("--loglevel", default="warning", help="faust log level: debug, info, warning, error")
    w.set_defaults(func=_worker)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from faust.worker import Worker

    from streams.kafka.control import published_items
    from streams.monitoring.metrics import WorkerMetrics
    from streams.vectors.store import connect
    from streams.worker.app import build_app
    from streams.worker.runtime import claim_tables, live_deployment, load_processor
    from streams.worker.threads import share_gil

    if port_open(settings.web_host, settings.web_port):
        raise WorkerError(f"port {settings.web_host}:{settings.web_port} is in use (is a worker running already?): "
                          "stop what holds it or set IU_WEB_PORT to a free port")
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    bootstrap = settings.kafka_bootstrap
    if settings.embedded:
        found, started = local_broker(settings).ensure()
        announce(found, started)
        bootstrap = found.bootstrap
    replication = prepare_topics(settings, bootstrap)  # an unreachable broker stops here, before the model loads
    metrics = WorkerMetrics()  # the process's default registry: /metrics serves it
    processor = load_processor(settings, metrics, connect(settings.milvus_target),
                               live_deployment(settings, bootstrap), published_items(bootstrap))
    processor.vectors.store.go_live(only_if_unset=True)
    app = build_app(settings, bootstrap, processor, metrics, replication)
    claim_tables(settings, Path(app.conf.tabledir), cluster_id(bootstrap, 10.0) or "unknown")
    share_gil(settings.gil_switch_ms)
    metrics.gc_frozen.set(settle_heap())
    time_collections(lambda generation, seconds: metrics.gc_pause.labels(str(generation)).observe(seconds))
    try:
        Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    except SystemExit as e:
        return int(e.code or 0)
    return 0
