"""End to end: an embedded worker under offered load, then flat out, then Faust's own ceiling.

Open loop: events are published at a fixed rate whatever the worker does, so a worker slower than
the offered rate shows as a growing backlog and latency, not as a slower producer. Per phase:
events/s applied and lists/s emitted (until the backlog is drained), end-to-end latency p50/p95/p99
(Kafka timestamp of the event -> list emitted, read back from iu.recommendations), CPU seconds
per 1k events. At the end: RSS and state bytes per user. In the same run, the ceiling: a trivial
Faust agent (ops/bench/ceiling.py) forwarding the same messages on the same broker; ours is
reported as a ratio of it. Events are ml-100k in time order, cycled with new ids when they run out.

    python -m ops.bench.e2e [--quick] [--stacks embedded,production] [--workers 1,2,3] [--json] [--record]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from models.data.contract import Event, Recommendation, read_events, read_items
from ops.bench import ceiling
from ops.bench.measure import Collector, counted, cpu_of, cpu_seconds, idle_cpu, stage_means, stage_totals
from ops.bench.report import emit, machine
from ops.kafka.cluster import KafkaCluster
from streams.cli.datasets import resolve
from streams.kafka.admin import create_topics, prepare_topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.replay import event_json, event_messages, producer, publish, publish_catalog
from streams.kafka.topics import RECOMMENDATIONS
from streams.monitoring.metrics import STAGES
from streams.settings import Settings
from streams.testing.supervise import MilvusServer, WorkerProcess
from streams.worker.heap import settle_heap

YEAR_MS = 365 * 86_400_000
STACK_NAMES = {"embedded": "Tansu broker, milvus-lite, exact in-worker retrieval",
               "production": "Apache Kafka 3 brokers RF 3 min.insync 2 acks=all, Milvus server, ANN retrieval"}


def endless(events: list[Event]) -> Iterator[Event]:
    """ml-100k over and over; each pass a year later with new ids, so nothing is late or a duplicate."""
    for k in itertools.count():
        for e in events:
            yield e if k == 0 else Event(f"{e.event_id}#{k}", e.user_id, e.item_id, e.action, e.scenario,
                                         e.ts + k * YEAR_MS)


def phase(name: str, rate: float, events: list[Event], prod, workers: list[WorkerProcess], recs: Collector,
          timeout: float) -> dict:
    """Publish `events` at `rate` (0: flat out) and wait until the workers have consumed them."""
    seen, stages0 = len(recs.values), stage_totals(workers)
    target, lists_before = counted(workers, "events_in") + len(events), counted(workers, "recommendations_out")
    cpu0, t0 = cpu_of(workers), time.time()
    publish(prod, event_messages(events), rate=rate, total=len(events), progress=False)
    deadline = time.monotonic() + timeout
    while counted(workers, "events_in") < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {len(events)} events not consumed within {timeout:.0f} s")
        time.sleep(0.25)
    elapsed, cpu = time.time() - t0, cpu_of(workers) - cpu0
    lists = counted(workers, "recommendations_out") - lists_before
    recs.wait_count(seen + lists, 60)
    ms = np.array([Recommendation.from_json(v).latency_ms for v in recs.values[seen:seen + lists]], float)
    p50, p95, p99 = (np.percentile(ms, [50, 95, 99]) if len(ms) else (np.nan,) * 3)
    print(f"{name}: {len(events):,} events in {elapsed:.1f} s, p99 {p99:.0f} ms", file=sys.stderr)  # progress
    return {"phase": name, "offered_per_s": rate or None, "events": len(events), "seconds": round(elapsed, 2),
            "events_per_s": round(len(events) / elapsed), "lists_per_s": round(lists / elapsed),
            "latency_ms_p50": round(float(p50)), "latency_ms_p95": round(float(p95)),
            "latency_ms_p99": round(float(p99)), "cpu_s_per_1k": round(1000 * cpu / len(events), 3),
            "stage_ms": stage_means(stages0, stage_totals(workers))}


def framework_ceiling(bootstrap: str, env: dict[str, str], events: list[Event], timeout: float) -> dict:
    settings = Settings.from_env(env)
    create_topics(bootstrap, {**{t: settings.partitions for t in ceiling.SOURCES}, ceiling.SINK: settings.partitions,
                              f"{ceiling.APP_ID}-__assignor-__leader": 1})
    out = Collector(bootstrap, ceiling.SINK)
    out.start()
    log = settings.state_dir.parent / f"{ceiling.APP_ID}.log"
    proc = subprocess.Popen([sys.executable, "-m", "ops.bench.ceiling", "worker", "--without-web", "-l", "warn"],
                            env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        prod = producer(bootstrap)
        topic = dict(zip(settings.scenarios, ceiling.SOURCES, strict=True))
        warm = events[0]
        deadline = time.monotonic() + 120
        while not out.values:  # until the agent has joined its group and forwards
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the ceiling agent did not start:\n{log.read_text()[-3000:]}")
            prod.produce(topic[warm.scenario], key=warm.user_id.encode(), value=event_json(warm))
            prod.flush(5)
            time.sleep(1)
        seen, cpu0, t0 = len(out.values), cpu_seconds(proc.pid), time.time()
        publish(prod, ((topic[e.scenario], e.user_id.encode(), event_json(e)) for e in events), progress=False)
        out.wait_count(seen + len(events), timeout)
        elapsed, cpu = time.time() - t0, cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(30)
        out.stopping.set()
    name = "ceiling: trivial agent"
    print(f"{name}: {len(events):,} events in {elapsed:.1f} s", file=sys.stderr)
    return {"phase": name, "offered_per_s": None, "events": len(events),
            "seconds": round(elapsed, 2), "events_per_s": round(len(events) / elapsed),
            "cpu_s_per_1k": round(1000 * cpu / len(events), 3)}


@contextmanager
def stack(name: str, tmp: Path) -> Iterator[dict[str, str]]:
    """The IU_* settings that put a worker on `name`: `embedded` (a Tansu broker, milvus-lite) or
    `production` (a 3-node Apache Kafka cluster, a Milvus server, Milvus ANN retrieval)."""
    if name == "embedded":
        with EmbeddedBroker() as broker:
            yield {"IU_KAFKA_BOOTSTRAP": broker.bootstrap, "IU_BROKER_PROFILE": "tansu",
                   "IU_MILVUS_URI": str(tmp / "milvus.db")}
        return
    with KafkaCluster(tmp / "kafka", nodes=3) as cluster, MilvusServer(tmp / "milvus") as milvus:
        yield {"IU_KAFKA_BOOTSTRAP": cluster.bootstrap, "IU_BROKER_PROFILE": "kafka", "IU_MILVUS_URI": milvus.uri,
               "IU_RETRIEVAL": "milvus"}


def run_stack(name: str, args: argparse.Namespace, model: Path, folder: Path, source: Iterator[Event],
              n_workers: int = 1, batch_target: int | None = None) -> dict:
    """One stack, fresh, with `n_workers` workers in one consumer group (more than one: each its own
    state folder and HTTP port, all on the stack's Milvus server, IU_PARTITIONS partitions), and
    IU_BATCH_TARGET as given (None: as set)."""
    target = Settings.from_env().batch_target if batch_target is None else batch_target
    rates = [float(r) for r in args.rates.split(",")]
    seconds = 10 if args.quick else args.seconds
    flat = 15_000 if args.quick else args.flat_events
    rows = []
    with tempfile.TemporaryDirectory(prefix="iu-bench-e2e-") as tmp, stack(name, Path(tmp)) as where, \
            ExitStack() as running:
        envs = [{**where, "IU_MODEL": str(model), "IU_STATE_DIR": f"{tmp}/faust-{k}", "IU_WEB_PORT": str(free_port()),
                 "IU_PARTITIONS": str(args.partitions), "IU_BATCH_TARGET": str(target)} for k in range(n_workers)]
        env = envs[0]
        bootstrap = where["IU_KAFKA_BOOTSTRAP"]
        prepare_topics(Settings.from_env(env), bootstrap)
        prod = producer(bootstrap, idempotent=name == "production")
        publish_catalog(prod, read_items(folder / "items.csv"))
        recs = Collector(bootstrap, RECOMMENDATIONS)
        recs.start()
        workers = [running.enter_context(WorkerProcess(e, Path(tmp) / f"worker-{k}.log")) for k, e in enumerate(envs)]
        settle_heap()  # this process is the load: its collector's pauses would come back as bursts
        phase("warm-up", 0, list(itertools.islice(source, 2000)), prod, workers, recs, 300)
        idle = idle_cpu(workers, 10)
        for rate in rates:
            rows.append(phase(f"offered {rate:.0f}/s", rate, list(itertools.islice(source, int(rate * seconds))),
                              prod, workers, recs, 600))
        rows.append(phase("flat out", 0, list(itertools.islice(source, flat)), prod, workers, recs, 900))
        rss_mb = sum(w.metric("process_resident_memory_bytes") for w in workers) / 2**20
        users = sum(w.metric("iu_users_in_state") for w in workers)
        state_per_user = sum(w.metric("iu_state_bytes") for w in workers) / max(users, 1)
        running.close()
        recs.stopping.set()
        rows.append(framework_ceiling(bootstrap, env, list(itertools.islice(source, flat)), 900))
    return {"stack": name, "workers": n_workers, "batch_target": target, "rows": rows, "idle_cpu_per_worker": idle,
            "rss_mb": round(rss_mb), "users": int(users),
            "state_bytes_per_user": round(state_per_user),
            "ratio_to_ceiling": round(rows[-2]["events_per_s"] / rows[-1]["events_per_s"], 3)}


def data_and_model(args: argparse.Namespace) -> tuple[Settings, Path, Path]:
    """The settings in force, ml-100k's folder and the model folder (`--model`, else IU_MODEL)."""
    settings = Settings.from_env()
    model = Path(args.model) if args.model else settings.model_path
    if not (model / "model.safetensors").exists():
        raise SystemExit(f"no model in {model}: train one first (iu train --dataset ml-100k)")
    return settings, resolve("ml-100k", settings), model


def run(args: argparse.Namespace) -> dict:
    settings, folder, model = data_and_model(args)
    events = sorted(read_events(folder / "events.csv"), key=lambda e: e.ts)
    # Each stack gets the same events, in the same order.
    counts = [int(n) for n in args.workers.split(",")]
    args.partitions = args.partitions or (6 if max(counts) > 1 else settings.partitions)
    if max(counts) > 1 and "embedded" in args.stacks.split(","):
        raise SystemExit("--workers above 1 needs --stacks production (milvus-lite is one process per file)")
    targets = [int(t) for t in args.batch_targets.split(",")] if args.batch_targets else [None]
    stacks = [run_stack(name, args, model, folder, endless(events), n, target)
              for name in args.stacks.split(",") for target in targets for n in counts]
    return {"machine": f"{machine()}; model {model}", "stacks": stacks}


def table(result: dict) -> str:
    tables = [stack_table(r) for r in result["stacks"]]
    if len({(r["workers"], r["batch_target"]) for r in result["stacks"]}) > 1:
        tables.append(scale_table(result["stacks"]))
    return "\n\n".join(tables)


def scale_table(results: list[dict]) -> str:
    """Per stack and worker count: flat-out events/s (and as a multiple of one worker's), each
    offered rate's p50/p99 ms, events per micro-batch and CPU seconds per 1k events, and each
    worker's CPU while idle."""
    loads = [r["phase"] for r in results[0]["rows"] if r["offered_per_s"]] + ["flat out"]
    lines = ["Scale-out (offered rates as p50/p99 ms; per load: events per batch, CPU s per 1k events):", "",
             "| stack | batch target | workers | flat events/s | × 1 worker | " + " | ".join(loads[:-1]) + " | " +
             " | ".join(f"{p}: batch, CPU s/1k" for p in loads) + " | idle CPU per worker |",
             "|---|---:|---:|---:|---:|" + "---:|" * (2 * len(loads))]
    for res in results:
        rows = {r["phase"]: r for r in res["rows"]}
        flat = rows["flat out"]
        base = next((r["events_per_s"] for x in results if x["stack"] == res["stack"] and x["workers"] == 1
                     and x["batch_target"] == res["batch_target"] for r in x["rows"] if r["phase"] == "flat out"),
                    flat["events_per_s"])
        latency = " | ".join(f"{rows[p]['latency_ms_p50']}/{rows[p]['latency_ms_p99']}" for p in loads[:-1])
        cpu = " | ".join(f"{rows[p]['stage_ms'].get('batch', '-')}, {rows[p]['cpu_s_per_1k']}" for p in loads)
        lines.append(f"| {res['stack']} | {res['batch_target']} | {res['workers']} | {flat['events_per_s']:,} | "
                     f"{flat['events_per_s'] / base:.2f} | {latency} | {cpu} | {res['idle_cpu_per_worker']:.1%} |")
    return "\n".join(lines)


def stack_table(result: dict) -> str:
    workers = f", {result['workers']} workers" if result["workers"] > 1 else ""
    workers += f", IU_BATCH_TARGET={result['batch_target']}"
    lines = [f"**{result['stack']}** ({STACK_NAMES[result['stack']]}{workers}):", "",
             "| phase | events | s | events/s | lists/s | p50 ms | p95 ms | p99 ms | CPU s / 1k |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['phase']} | {r['events']:,} | {r['seconds']} | {r['events_per_s']:,} | "
                     f"{r.get('lists_per_s', '-')} | {r.get('latency_ms_p50', '-')} | {r.get('latency_ms_p95', '-')} | "
                     f"{r.get('latency_ms_p99', '-')} | {r['cpu_s_per_1k']} |")
    timed = [r for r in result["rows"] if r.get("stage_ms")]
    stages = [s for s in STAGES if any(s in r["stage_ms"] for r in timed)]
    lines += ["", "Mean ms per micro-batch by stage (the worker's iu_stage_duration_seconds), and events per batch:",
              "", f"| phase | events/batch | {' | '.join(stages)} |", "|---|---:|" + "---:|" * len(stages)]
    for r in timed:
        ms = r["stage_ms"]
        lines.append(f"| {r['phase']} | {ms.get('batch', '-')} | " + " | ".join(str(ms.get(s, "-")) for s in stages)
                     + " |")
    lines.append(f"\nRSS {result['rss_mb']} MB; {result['users']} users, {result['state_bytes_per_user']:,} state "
                 f"bytes per user; flat out = {result['ratio_to_ceiling']:.0%} of the trivial agent.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s per rate and 15,000 flat-out events")
    ap.add_argument("--rates", default="500,1000,2000", help="offered loads, events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of offered load per rate")
    ap.add_argument("--flat-events", type=int, default=60_000, help="events published flat out (and to the ceiling)")
    ap.add_argument("--model", default="", help="model folder (default: IU_MODEL)")
    ap.add_argument("--stacks", default="embedded", help="comma-separated, run one after the other: `embedded` "
                    "(Tansu, milvus-lite) and/or `production` (3-node Apache Kafka, a Milvus server; needs "
                    "`make kafka-jars`)")
    ap.add_argument("--workers", default="1", help="worker counts, comma-separated (e.g. 1,2,3), each a run of its "
                    "own in one consumer group; above 1 on the production stack only")
    ap.add_argument("--batch-targets", default="", help="IU_BATCH_TARGET values, comma-separated (e.g. 0,128), "
                    "each a run of its own for every worker count; empty: IU_BATCH_TARGET as set")
    ap.add_argument("--partitions", type=int, default=0, help="IU_PARTITIONS, which bounds how many workers share "
                    "the load; 0: IU_PARTITIONS as set (default 4), or 6 when --workers goes above 1")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--record", action="store_true", help="append a dated section to ops/bench/RESULTS.md")
    args = ap.parse_args()
    result = run(args)
    emit(result, table(result), as_json=args.json, record=args.record, title="e2e bench",
         command=f"python -m ops.bench.e2e{' --quick' if args.quick else ''} --stacks {args.stacks} "
                 f"--workers {args.workers}" + (f" --batch-targets {args.batch_targets}" if args.batch_targets else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
