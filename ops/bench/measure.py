"""What the benches read off running workers: CPU seconds, per-stage times and micro-batch sizes from
their metrics, counters from /stats, and a topic read back in the background."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer

from streams.testing.supervise import WorkerProcess


class Collector(threading.Thread):
    """Reads a topic from the start in the background: each message's value, as it arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}-{time.time_ns()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.values: list[bytes] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for msg in self.consumer.consume(1000, 0.2):
                if not msg.error():
                    self.values.append(msg.value())
        self.consumer.close()

    def wait_count(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.values) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.values)} of {n} messages within {timeout:.0f} s")
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_totals(workers: list[WorkerProcess]) -> dict[str, list[float]]:
    """Seconds and calls so far per pipeline stage, and events and micro-batches (key "batch"), summed
    over the workers."""
    totals: dict[str, list[float]] = {}
    for s in (s for w in workers for s in w.samples()):
        if s.name.startswith(("iu_stage_duration_seconds_", "iu_batch_size_events_")) and \
                s.name.endswith(("_sum", "_count")):
            key = s.labels.get("stage", "batch")
            totals.setdefault(key, [0.0, 0.0])[s.name.endswith("_count")] += s.value
    return totals


def counted(workers: list[WorkerProcess], key: str) -> int:
    """A /stats counter summed over the workers."""
    return sum(w.get("/stats").get(key, 0) for w in workers)


def cpu_of(workers: list[WorkerProcess]) -> float:
    return sum(cpu_seconds(w.proc.pid) for w in workers if w.proc is not None)


def stage_means(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, float]:
    """Per stage, mean ms per call between two `stage_totals`; "batch": mean events per micro-batch."""
    out = {}
    for key, (total, calls) in after.items():
        t0, c0 = before.get(key, [0.0, 0.0])
        if calls > c0:
            out[key] = round((total - t0) / (calls - c0) * (1 if key == "batch" else 1000), 2)
    return out


def idle_cpu(workers: list[WorkerProcess], seconds: float) -> float:
    """CPU seconds per second that each worker spends with nothing to consume (timers, heartbeats,
    fetch polls): the part of CPU per event that grows with the worker count, not with the load."""
    cpu0 = cpu_of(workers)
    time.sleep(seconds)
    return round((cpu_of(workers) - cpu0) / seconds / len(workers), 4)
