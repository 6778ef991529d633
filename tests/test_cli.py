"""The `iu` command end to end on a tiny synthetic data set, as a user runs it."""

import json
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer

from streams.broker import EmbeddedBroker


def iu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_synth_train_eval(tmp_path):
    data, model = tmp_path / "synth", tmp_path / "model"
    r = iu("data", "synth", "--users", "60", "--items", "50", "--events-per-user", "20", "--out", str(data))
    assert r.returncode == 0, r.stderr
    r = iu("train", "--dataset", str(data), "--out", str(model), "--epochs", "2", "--dim", "16", "--max-len", "10")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["model_version"].startswith("model-")
    for name in ("model.safetensors", "config.json", "items.json", "meta.json"):
        assert (model / name).exists()
    r = iu("eval", "--model", str(model), "--dataset", str(data))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for who in ("model", "popularity"):
        assert set(out[who]) == {"hr@10", "ndcg@10", "mrr@10"}
        assert 0 <= out[who]["ndcg@10"] <= out[who]["hr@10"] <= 1
    assert out["users"] == 60


@pytest.mark.parametrize("cmd", [["--help"], ["data", "fetch", "--help"], ["data", "synth", "--help"],
                                 ["train", "--help"], ["eval", "--help"]])
def test_help_explains_each_command(cmd):
    r = iu(*cmd)
    assert r.returncode == 0 and "usage: iu" in r.stdout


def test_bad_config_value_is_one_clear_line():
    r = iu("data", "synth", "--help", env={"IU_SEED": "abc"})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iu: bad configuration: IU_SEED='abc'")


def test_eval_without_model_says_train_first(tmp_path):
    r = iu("eval", "--model", str(tmp_path / "none"), "--dataset", str(tmp_path))
    assert r.returncode == 1
    assert "iu train" in r.stderr


def test_publish_routes_json_lines_by_scenario_and_user():
    with EmbeddedBroker() as b:  # its own: other tests make topics with other partition counts
        check_publish(b.bootstrap)


def check_publish(broker: str) -> None:

    lines = [json.dumps({"event_id": "p1", "user_id": "u7", "item_id": "1", "action": "click",
                         "scenario": "search", "ts": 1}), "garbage"]
    r = subprocess.run([sys.executable, "-m", "streams.cli", "publish"], input="\n".join(lines), text=True,
                       capture_output=True, env={**os.environ, "IU_KAFKA_BOOTSTRAP": broker}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["events_published"] == 2
    c = Consumer({"bootstrap.servers": broker, "group.id": "t-publish", "auto.offset.reset": "earliest"})
    c.subscribe(["iu.events.search", "iu.events.home"])
    got, deadline = {}, time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got[m.topic()] = (m.key(), m.value())
    c.close()
    assert got["iu.events.search"][0] == b"u7"
    assert got["iu.events.home"] == (b"", b"garbage")  # unroutable lines still go out, to be dead-lettered


def test_replay_without_a_broker_says_what_to_do():
    r = iu("replay", "--limit", "1", env={"IU_KAFKA_BOOTSTRAP": ""})
    assert r.returncode == 1 and "IU_KAFKA_BOOTSTRAP" in r.stderr
