"""The `iu` command end to end on a tiny synthetic data set, as a user runs it."""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from streams.cli import build_parser
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.settings import Settings
from tests.replays import iu

pytestmark = pytest.mark.integration  # starts brokers, workers or `iu` processes


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


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                         argparse.ArgumentParser]]:
    """Every (sub)command's parser, depth first, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def test_help_explains_every_option_with_its_default():
    parsers = dict(commands(build_parser(Settings())))
    assert {p[0] for p in parsers if p} >= {"data", "train", "eval", "broker", "worker", "replay", "publish",
                                            "recs", "demo", "config"}
    for path, parser in parsers.items():
        assert parser.description or not path, f"iu {' '.join(path)} has no description"
        text = " ".join(parser.format_help().split())  # unwrapped
        assert "(default: None)" not in text, f"iu {' '.join(path)}: an option's help says nothing of its absence"
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"iu {' '.join(path)} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default is not None:
                assert f"(default: {action.default})" in text, (path, action.option_strings)
    r = iu("demo", "--help")  # the installed entry point too, as a user runs it
    assert r.returncode == 0 and "usage: iu demo" in r.stdout and "(default: 20000)" in r.stdout


def fails_with_one_line(r: subprocess.CompletedProcess, *needles: str, code: int = 1) -> None:
    """What a user hits: one line on stderr that names the problem and what to do, a non-zero exit."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("iu: "), (r.returncode, r.stderr[-2000:])
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_config_value_is_one_clear_line():
    fails_with_one_line(iu("data", "synth", "--help", env={"IU_SEED": "abc"}), "IU_SEED='abc'", "Fix or unset it",
                        code=2)


def test_eval_without_model_says_train_first(tmp_path):
    fails_with_one_line(iu("eval", "--model", str(tmp_path / "none"), "--dataset", str(tmp_path)), "iu train")


def test_worker_without_model_says_train_first(tmp_path):
    env = {"IU_MODEL": str(tmp_path / "none"), "IU_WEB_PORT": str(free_port()), "IU_STATE_DIR": str(tmp_path)}
    fails_with_one_line(iu("worker", env=env), "no trained model", "iu train")


def test_worker_with_an_unreachable_broker_says_which(tmp_path):
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"IU_KAFKA_BOOTSTRAP": bootstrap, "IU_WEB_PORT": str(free_port())}
    fails_with_one_line(iu("worker", env=env), bootstrap, "unreachable", "IU_KAFKA_BOOTSTRAP")


def test_worker_with_an_unreachable_milvus_says_which(tiny_model, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    env = {"IU_MILVUS_URI": uri, "IU_MODEL": str(tiny_model), "IU_WEB_PORT": str(free_port()),
           "IU_MILVUS_TIMEOUT_S": "2", "IU_STATE_DIR": str(tmp_path)}
    fails_with_one_line(iu("worker", env=env), uri, "IU_MILVUS_URI")


def test_worker_on_a_port_in_use_says_so(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        fails_with_one_line(iu("worker", env={"IU_WEB_PORT": str(port)}), f"127.0.0.1:{port}", "IU_WEB_PORT")


def test_publish_routes_json_lines_by_scenario_and_user(consume_all):
    lines = [json.dumps({"event_id": "p1", "user_id": "u7", "item_id": "1", "action": "click",
                         "scenario": "search", "ts": 1}), "garbage"]
    with EmbeddedBroker() as b:  # its own: other tests make topics with other partition counts
        r = subprocess.run([sys.executable, "-m", "streams.cli", "publish"], input="\n".join(lines), text=True,
                           capture_output=True, env={**os.environ, "IU_KAFKA_BOOTSTRAP": b.bootstrap}, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["events_published"] == 2
        search = consume_all(b.bootstrap, "iu.events.search", lambda ms: ms, 30)
        home = consume_all(b.bootstrap, "iu.events.home", lambda ms: ms, 30)
    assert [m.key() for m in search] == [b"u7"]
    assert [(m.key(), m.value()) for m in home] == [(b"", b"garbage")]  # unroutable: sent, to be dead-lettered


def test_a_stop_request_ends_a_command_as_ctrl_c_does(consume_all):
    """SIGTERM (`timeout`, `kill`, a CI runner) is a Ctrl-C for every `iu` command: `iu publish` waiting
    on an open stdin delivers what it read and exits 130, where a stock Python process dies of the signal."""
    with EmbeddedBroker() as b:
        pub = subprocess.Popen([sys.executable, "-m", "streams.cli", "publish"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "IU_KAFKA_BOOTSTRAP": b.bootstrap})
        try:
            assert pub.stdin is not None
            pub.stdin.write(json.dumps({"event_id": "t1", "user_id": "u1", "item_id": "1", "action": "click",
                                        "scenario": "home", "ts": 1}).encode() + b"\n")
            pub.stdin.flush()
            assert [m.key() for m in consume_all(b.bootstrap, "iu.events.home", lambda ms: ms, 60)] == [b"u1"]
            pub.send_signal(signal.SIGTERM)
            pub.wait(60)  # with stdin still open: closing it would end the command the normal way
            _, err = pub.communicate(timeout=60)
        finally:
            if pub.poll() is None:
                pub.kill()
                pub.wait(30)
    assert pub.returncode == 130, err.decode(errors="replace")
    assert b"iu: interrupted" in err


def test_replay_without_a_broker_says_what_to_do(tmp_path):
    fails_with_one_line(iu("replay", "--limit", "1", env={"IU_KAFKA_BOOTSTRAP": "", "IU_BROKER_DIR": str(tmp_path)}),
                        "IU_KAFKA_BOOTSTRAP", "iu broker start")


def test_model_commands_on_a_fresh_broker_say_what_is_missing(tmp_path):
    with EmbeddedBroker() as b:  # no worker has run: iu.models does not exist yet
        env = {"IU_KAFKA_BOOTSTRAP": b.bootstrap}
        status = iu("model", "status", env=env)
        assert status.returncode == 0, status.stderr[-2000:]
        assert json.loads(status.stdout) == {"live": None, "path": None, "reason": None, "previous": None,
                                             "shadow": None, "workers": []}
        fails_with_one_line(iu("model", "rollback", env=env), "no previous live version")
        fails_with_one_line(iu("model", "promote", env=env), "no shadow version", "--shadow")
        fails_with_one_line(iu("model", "deploy", str(tmp_path / "none"), env=env), "no trained model", "iu train")
