"""At least once against Faust's exactly once (IU_GUARANTEE), on the production stack: what each
costs, and how many lists a `read_committed` consumer of iu.recommendations sees twice after a crash.

Per guarantee, on a fresh 3-node Apache Kafka cluster and Milvus server: a worker under offered load
(1,000 events/s by default) and flat out, as in the e2e bench; then a replay flat out during which
the worker is killed (kill -9) half way and a new one started, until every event is applied. Then
iu.recommendations is read from the start with isolation.level=read_committed: lists, distinct
trigger events, and lists seen twice. The state's event count is checked against what was sent.

    python -m ops.bench.guarantee [--quick] [--json] [--record]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

from models.data.contract import Recommendation, read_events, read_items
from ops.bench.e2e import data_and_model, endless, phase, stack
from ops.bench.measure import Collector
from ops.bench.report import emit, machine
from streams.kafka.admin import prepare_topics
from streams.kafka.broker import free_port
from streams.kafka.reader import read
from streams.kafka.replay import event_messages, producer, publish, publish_catalog
from streams.kafka.topics import RECOMMENDATIONS
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess

GUARANTEES = ("at_least_once", "exactly_once")


def committed_lists(bootstrap: str) -> list[str]:
    """The trigger event id of every list on iu.recommendations, read from the start until nothing
    more comes for 5 s, by a consumer that reads committed records only (librdkafka's default)."""
    return [Recommendation.from_json(value).trigger_event_id
            for value in read(bootstrap, RECOMMENDATIONS, idle_timeout=5)]


def run_guarantee(guarantee: str, args: argparse.Namespace, model: Path, folder: Path) -> dict:
    source = endless(sorted(read_events(folder / "events.csv"), key=lambda e: e.ts))
    with tempfile.TemporaryDirectory(prefix="iu-bench-guarantee-") as tmp, stack("production", Path(tmp)) as where:
        env = {**where, "IU_MODEL": str(model), "IU_STATE_DIR": f"{tmp}/faust", "IU_WEB_PORT": str(free_port()),
               "IU_GUARANTEE": guarantee}
        bootstrap = where["IU_KAFKA_BOOTSTRAP"]
        prepare_topics(Settings.from_env(env), bootstrap)
        prod = producer(bootstrap, idempotent=True)
        publish_catalog(prod, read_items(folder / "items.csv"))
        recs = Collector(bootstrap, RECOMMENDATIONS)
        recs.start()
        seconds = 10 if args.quick else args.seconds
        flat = 15_000 if args.quick else args.flat_events
        sent = 0
        worker = WorkerProcess(env, Path(tmp) / "first.log").start()
        try:
            rows = []
            plan = (("warm-up", 0, 2000), (f"offered {args.rate:.0f}/s", args.rate, int(args.rate * seconds)),
                    ("flat out", 0, flat))
            for name, rate, n in plan:
                rows.append(phase(name, rate, list(itertools.islice(source, n)), prod, [worker], recs, 600))
                sent += n
            crash = list(itertools.islice(source, args.crash_events))
            half = sent + len(crash) // 2
            publish(prod, event_messages(crash), progress=False)
            sent += len(crash)
            worker.wait_for(lambda s: s.get("events_in", 0) >= half, 300, "half the crash replay")
        finally:
            worker.kill()
        print(f"{guarantee}: worker killed half way through {len(crash):,} events; restarting", file=sys.stderr)
        with WorkerProcess(env, Path(tmp) / "again.log") as again:
            deadline = time.monotonic() + 600
            while (applied := again.get("/state/digest").get("events_applied", 0)) < sent:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{applied} of {sent} events applied after the restart")
                time.sleep(1)
            time.sleep(3)  # anything applied twice would show in the count now
            applied = again.get("/state/digest")["events_applied"]
        recs.stopping.set()
        triggers = committed_lists(bootstrap)
    return {"guarantee": guarantee, "rows": rows[1:], "events": sent, "applied": applied,
            "lists": len(triggers), "distinct": len(set(triggers)), "twice": len(triggers) - len(set(triggers))}


def run(args: argparse.Namespace) -> dict:
    _, folder, model = data_and_model(args)
    return {"machine": f"{machine()}; model {model}",
            "runs": [run_guarantee(g, args, model, folder) for g in args.guarantees.split(",")]}


def table(result: dict) -> str:
    lines = ["| IU_GUARANTEE | phase | events/s | p50 ms | p99 ms | CPU s / 1k |", "|---|---|---:|---:|---:|---:|"]
    for run in result["runs"]:
        for r in run["rows"]:
            lines.append(f"| {run['guarantee']} | {r['phase']} | {r['events_per_s']:,} | {r['latency_ms_p50']} | "
                         f"{r['latency_ms_p99']} | {r['cpu_s_per_1k']} |")
    lines += ["", "After kill -9 half way through the last replay and a restart (read_committed):", "",
              "| IU_GUARANTEE | events sent | applied | lists | distinct triggers | lists seen twice |",
              "|---|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        lines.append(f"| {run['guarantee']} | {run['events']:,} | {run['applied']:,} | {run['lists']:,} | "
                     f"{run['distinct']:,} | {run['twice']:,} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guarantees", default=",".join(GUARANTEES), help="IU_GUARANTEE values, comma-separated, "
                    "each on a fresh cluster")
    ap.add_argument("--rate", type=float, default=1000.0, help="offered load, events/s")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of offered load")
    ap.add_argument("--flat-events", type=int, default=30_000, help="events published flat out")
    ap.add_argument("--crash-events", type=int, default=10_000, help="events replayed while the worker is killed")
    ap.add_argument("--quick", action="store_true", help="10 s of offered load and 15,000 flat-out events")
    ap.add_argument("--model", default="", help="model folder (default: IU_MODEL)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--record", action="store_true", help="append a dated section to ops/bench/RESULTS.md")
    args = ap.parse_args()
    result = run(args)
    emit(result, table(result), as_json=args.json, record=args.record, title="delivery guarantees",
         command=f"python -m ops.bench.guarantee{' --quick' if args.quick else ''} --guarantees {args.guarantees}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
