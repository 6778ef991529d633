"""Observability against real servers: a real Prometheus (Debian's package, installed by `make test`)
scrapes a real worker during a replay on each stack, then every PromQL expression of the provisioned Grafana
dashboard must return data; `promtool check metrics` lints the exposition itself."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from models.data.contract import read_events, read_items
from streams.kafka.broker import free_port
from streams.kafka.replay import event_messages, publish, publish_catalog
from streams.settings import Settings
from streams.testing.supervise import WorkerProcess

ML100K = Path("var/data/ml-100k")
DASHBOARD = Path("ops/grafana/dashboards/interest-updater.json")
N_EVENTS = 3000
RATE = 300.0  # events/s: the replay spans ~10 s, so rates over a 15 s window see it
GRAFANA_VARS = {"$__rate_interval": "15s", "$__interval": "1s"}  # what Grafana substitutes before querying


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows included."""
    def panels(ps: list[dict]) -> list[dict]:
        return [q for p in ps for q in [p, *panels(p.get("panels", []))]]
    return [(p["title"], t["expr"]) for p in panels(json.loads(DASHBOARD.read_text())["panels"])
            for t in p.get("targets", [])]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs Debian's prometheus package (make prometheus)")
    return path


class Prometheus:
    def __init__(self, target: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "interest-updater", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen([tool("prometheus"), f"--config.file={config}",
                                      f"--storage.tsdb.path={folder / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {timeout:.0f} s")

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def target_up(self) -> bool:
        return any(s["value"][1] == "1" for s in self.query('up{job="interest-updater"}'))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def finite(result: list[dict]) -> list[float]:
    return [v for s in result if not math.isnan(v := float(s["value"][1]))]


def test_dashboard_queries_return_data_from_a_real_prometheus(tiny_model, stack, tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 15
    port = free_port()
    env = {**stack.env, "IU_MODEL": str(tiny_model), "IU_WEB_PORT": str(port), "IU_DEVICE": "cpu",
           "IU_STATE_DIR": str(tmp_path / "faust")}
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        prom = Prometheus(f"127.0.0.1:{port}", tmp_path)
        try:
            prom.wait_ready()
            deadline = time.monotonic() + 30
            while not prom.target_up():
                assert time.monotonic() < deadline, "prometheus never scraped the worker"
                time.sleep(0.5)
            prod = stack.producer()
            publish_catalog(prod, read_items(ML100K / "items.csv"))
            events = sorted(read_events(ML100K / "events.csv"), key=lambda e: e.ts)[:N_EVENTS]
            publish(prod, event_messages(events), rate=RATE, progress=False)
            worker.wait_for(lambda s: s.get("events_in", 0) >= N_EVENTS, 180, f"{N_EVENTS} events processed")
            time.sleep(3)  # two more scrapes after the last batch

            empty = []
            for title, expr in queries:
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                if not finite(prom.query(expr)):
                    empty.append(f"{title}: {expr}")
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

            # Spot checks that the numbers are the worker's, not just present.
            [consumed] = finite(prom.query("sum(iu_events_consumed_total)"))
            assert consumed == N_EVENTS
            [trials] = finite(prom.query("sum(iu_online_trials_total)"))
            assert trials == worker.get("/stats")["quality"]["trials"] > 0
            assert finite(prom.query('iu_model_info{device="cpu"}')) == [1.0]
            # small batches: a core left to the event loop
            assert finite(prom.query("iu_compute_threads")) == [Settings().thread_budget[0]]
            [frozen] = finite(prom.query("iu_gc_frozen_objects"))
            assert frozen > 100_000  # torch, the model and Faust, out of the collector's way
        finally:
            prom.close()

        exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    lint = subprocess.run([tool("promtool"), "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    assert b"iu_users_in_state" in exposition and b"user_id=" not in exposition
