"""Continual training measured: does a model fine-tuned on the stream, deployed mid-replay, do better
than the model it came from?

ml-100k is split in time at its midpoint. Model A is trained on the first half alone. Then, twice, on a
fresh embedded stack with a worker serving A: the first half is replayed (warm-up: user states), then
the first quarter of the second half; then
- run "A alone": the rest of the second half is replayed;
- run "A then A'": `iu train --resume A --from-topics` fine-tunes A on the event log so far (the first
  half and that quarter), `iu model deploy` makes the result A' live, and the rest is replayed.
Online hit rate@10 is the worker's prequential one, counted over the rest of the replay only (its
counters read before and after). Offline, A and A' are ranked on each user's last ml-100k event
(chronological leave-one-out over the whole data set, history masked, full ranking), beside a control:
A trained for as many more epochs on the first half only (`iu train --resume A --dataset`), which
separates what the newer events bring from what more epochs bring.

    python -m ops.bench.continual [--epochs N] [--tune-epochs N] [--json] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models.data.contract import Event, read_events, read_items, write_events
from ops.bench.e2e import stack
from ops.bench.report import emit, machine
from streams.cli.datasets import resolve
from streams.kafka.admin import prepare_topics
from streams.kafka.broker import free_port
from streams.kafka.replay import event_messages, producer, publish, publish_catalog
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess


def iu(*args: str, env: dict[str, str] | None = None) -> dict:
    """An `iu` command's last JSON line; its progress goes to this process's stderr."""
    r = subprocess.run([sys.executable, "-m", "streams.cli", *args], stdout=subprocess.PIPE, text=True,
                       env={**os.environ, **(env or {})}, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def first_half(folder: Path, out: Path) -> list[Event]:
    """A data set folder holding ml-100k's first half in time (the catalog whole); the events, sorted."""
    events = sorted(read_events(folder / "events.csv"), key=lambda e: e.ts)
    out.mkdir(parents=True, exist_ok=True)
    write_events(out / "events.csv", events[:len(events) // 2])
    (out / "items.csv").write_bytes((folder / "items.csv").read_bytes())
    return events


def replay(model: Path, folder: Path, events: list[Event], tmp: Path, tune: argparse.Namespace | None) -> dict:
    """One run on a fresh embedded stack; with `tune`, A is fine-tuned and deployed at the quarter."""
    half = len(events) // 2
    quarter = half + (len(events) - half) // 4
    with stack("embedded", tmp) as where:
        env = {**where, "IU_MODEL": str(model), "IU_STATE_DIR": str(tmp / "faust"), "IU_WEB_PORT": str(free_port()),
               "IU_DEVICE": "cpu", "IU_MONITOR_USERS": "1000000"}
        prepare_topics(Settings.from_env(env), where["IU_KAFKA_BOOTSTRAP"])
        prod = producer(where["IU_KAFKA_BOOTSTRAP"])
        publish_catalog(prod, read_items(folder / "items.csv"))
        with WorkerProcess(env, tmp / "worker.log") as worker:
            publish(prod, event_messages(events[:quarter]), progress=False)
            wait_consumed(worker, quarter)
            tuning: dict = {}
            if tune is not None:
                started = time.monotonic()
                tuning = iu("train", "--resume", str(model), "--from-topics", "--out", str(tmp / "tuned"), "--epochs",
                            str(tune.tune_epochs), "--patience", "2", "--lr", str(tune.tune_lr), "--device", "cpu",
                            env=env)
                iu("model", "deploy", str(tmp / "tuned"), "--wait", "600", env=env)
                tuning["seconds"] = round(time.monotonic() - started, 1)
            before = counts(worker)
            publish(prod, event_messages(events[quarter:]), progress=False)
            wait_consumed(worker, len(events))
            after = counts(worker)
            served = worker.get("/health")["model_version"]
    trials = after["trials"] - before["trials"]
    rate = {r: round((after[r] - before[r]) / trials, 4) for r in ("ours", "popularity")}
    return {"trials": trials, "hit_rate_ours": rate["ours"], "hit_rate_popularity": rate["popularity"],
            "served_at_end": served, "tuning": tuning}


def counts(worker: WorkerProcess) -> dict[str, float]:
    """Prequential trials and hits by recommender so far, all scenarios together."""
    samples = worker.samples()
    hits = {r: sum(s.value for s in samples if s.name == "iu_online_hits_total" and s.labels["recommender"] == r)
            for r in ("ours", "popularity")}
    return {"trials": sum(s.value for s in samples if s.name == "iu_online_trials_total"), **hits}


def wait_consumed(worker: WorkerProcess, n: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while worker.get("/stats").get("events_in", 0) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not consume {n} events within {timeout:.0f} s")
        time.sleep(1)


def offline(model: Path) -> dict:
    """NDCG@10 and HR@10 on each user's last ml-100k event."""
    r = iu("eval", "--model", str(model), "--dataset", "ml-100k", "--device", "cpu")
    return {"ndcg@10": round(r["model"]["ndcg@10"], 4), "hr@10": round(r["model"]["hr@10"], 4)}


def run(args: argparse.Namespace) -> dict:
    folder = resolve("ml-100k", Settings.from_env())
    with tempfile.TemporaryDirectory(prefix="iu-bench-continual-") as name:
        tmp = Path(name)
        events = first_half(folder, tmp / "first-half")
        model = tmp / "A"
        trained = iu("train", "--dataset", str(tmp / "first-half"), "--out", str(model), "--epochs", str(args.epochs),
                     "--patience", "10", "--device", "cpu")
        alone = replay(model, folder, events, tmp / "alone", None)
        tuned = replay(model, folder, events, tmp / "tuned", args)
        control = iu("train", "--resume", str(model), "--dataset", str(tmp / "first-half"), "--out",
                     str(tmp / "more-epochs"), "--epochs", str(args.tune_epochs), "--patience", "2", "--lr",
                     str(args.tune_lr), "--device", "cpu")
        return {"machine": machine(), "events": len(events), "model_a": trained, "control": control,
                "runs": {"A alone": alone, "A then A'": tuned},
                "offline": {"A": offline(model), "A'": offline(tmp / "tuned" / "tuned"),
                            "A, more epochs on the first half": offline(tmp / "more-epochs")}}


def table(result: dict) -> str:
    runs, off = result["runs"], result["offline"]
    tuning = runs["A then A'"]["tuning"]
    lines = ["| run | online trials | online HR@10 ours | online HR@10 popularity | offline NDCG@10 | offline HR@10 |",
             "|---|---|---|---|---|---|"]
    for name, key in (("A alone", "A"), ("A then A'", "A'")):
        r = runs[name]
        lines.append(f"| {name} | {r['trials']:.0f} | {r['hit_rate_ours']} | {r['hit_rate_popularity']} | "
                     f"{off[key]['ndcg@10']} | {off[key]['hr@10']} |")
    key = "A, more epochs on the first half"
    lines.append(f"| control: {key} (offline only) | | | | {off[key]['ndcg@10']} | {off[key]['hr@10']} |")
    lines += ["", f"A: best epoch {result['model_a']['best_epoch']}, valid NDCG@10 "
              f"{result['model_a']['best_valid_ndcg@10']}. A': fine-tuned on {tuning.get('users')} users' event "
              f"logs from the topics, best epoch {tuning.get('best_epoch')}, valid NDCG@10 "
              f"{tuning.get('best_valid_ndcg@10')}; fine-tune and deploy took {tuning.get('seconds')} s "
              "(the replay waited)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=60, help="most epochs for model A (patience 10) (default: 60)")
    p.add_argument("--tune-epochs", type=int, default=5, help="most epochs of the fine-tune (patience 2) (default: 5)")
    p.add_argument("--tune-lr", type=float, default=5e-4, help="the fine-tune's learning rate (default: 0.0005)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--record", action="store_true", help="append the table to ops/bench/RESULTS.md")
    args = p.parse_args()
    result = run(args)
    emit(result, table(result), as_json=args.json, record=args.record, title="continual training",
         command="python -m ops.bench.continual " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
