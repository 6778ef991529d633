"""Child processes: `iu worker`s (the demo and the tests drive real ones, so a restart really is a
new process that must recover its state from the changelog) and a Milvus server."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.errors import WorkerError
from streams.kafka.broker import port_open
from streams.settings import PREFIX, WILDCARD_HOSTS, Settings


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> None:
    """Waits for `proc` to exit; SIGKILL past `timeout`."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)

class LogFile:
    """A child process's log file, open while it runs and closed once it has stopped."""

    _log: IO[bytes] | None = None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcess(LogFile):
    def __init__(self, env: dict[str, str], log: Path) -> None:
        """`env`: IU_* settings on top of this process's environment (IU_WEB_PORT must be free)."""
        self.env = {**os.environ, **env}
        settings = Settings.from_env({k: v for k, v in self.env.items() if k.startswith(PREFIX)})
        host = "127.0.0.1" if settings.web_host in WILDCARD_HOSTS and not settings.web_advertised_host \
            else settings.advertised_host
        self.url = f"http://{host}:{settings.web_port}"
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:  # never ready, or Ctrl-C while waiting: `with` will not stop what it never got
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise WorkerError(f"worker exited during start-up; see {self.log_path}:\n{self.tail()}")
            try:
                if self.get("/health").get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise WorkerError(f"worker not ready within {timeout:.0f} s; see {self.log_path}:\n{self.tail()}")

    def get(self, path: str, timeout: float = 30.0, headers: Mapping[str, str] | None = None) -> dict:
        """The JSON answer; for an HTTP error, its body with `http_status` (and `retry_after` if given)."""
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=dict(headers or {})),
                                        timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            status = {"http_status": e.code} | ({"retry_after": e.headers["Retry-After"]}
                                                if "Retry-After" in e.headers else {})
            try:
                return {**status, **json.loads(body or b"{}")}
            except ValueError:  # Faust's own error page (a request proxied to a worker that died)
                return {**status, "error": body.decode(errors="replace")[:300]}
        except OSError as e:  # refused or reset: say so with the worker's exit code and log if it is gone
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerError(f"worker exited with code {self.proc.returncode} ({e}); see {self.log_path}:\n"
                                  f"{self.tail()}") from e
            raise

    def samples(self) -> list[Sample]:
        """Every sample on /metrics, parsed (a histogram's `_sum`, `_count` and buckets included)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    def metric(self, name: str) -> float:
        """Sum of one sample name's values over all its label sets."""
        return sum(s.value for s in self.samples() if s.name == name)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """Poll /stats until `predicate(stats)` holds; returns those stats."""
        deadline = time.monotonic() + timeout
        stats: dict = {}
        while time.monotonic() < deadline:
            stats = self.get("/stats")
            if predicate(stats):
                return stats
            time.sleep(0.25)
        raise WorkerError(f"timed out after {timeout:.0f} s waiting for {what}; last stats {stats}")

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful: SIGTERM lets Faust commit offsets and flush the changelog. Kill if it hangs."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            wait_or_kill(self.proc, timeout)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed; what the reliability tests inflict."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stop()

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


MILVUS_PORT = 19530
BANNER = "Welcome to use Milvus!"  # what `milvus-server` prints once the server is healthy
# Its components reach each other on loopback (by default on the host's first address), and a
# restarted server waits for the sessions its predecessor registered to expire: 10 s, not 30.
MILVUS_CONFIG = {**{f"{role}.ip": "127.0.0.1" for role in ("rootCoord", "proxy", "queryCoord", "queryNode",
                                                          "indexNode", "dataCoord", "dataNode")},
                 "common.session.ttl": 10}


def fixed_free_port(start: int) -> int:
    """The first free port from `start` up, below the ephemeral range: a server restarted on the
    same port must find it free, and while it is down any outgoing connection on this host may
    be given a port of that range as its own end."""
    for port in range(start, start + 1000):
        if not port_open("127.0.0.1", port):
            with contextlib.suppress(OSError), socket.socket() as s:
                s.bind(("127.0.0.1", port))
                return port
    raise RuntimeError(f"no free port in {start}..{start + 999}")


# `milvus-server` with one change: it probes each port with a plain bind, which fails while
# connections to the previous server on that port linger in TIME_WAIT, and then silently serves on
# the next free port instead of the one asked for. Probed with SO_REUSEADDR, as servers bind.
LAUNCH = """
import socket, sys
import milvus

def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None

milvus.MilvusServerConfig.try_bind_port = try_bind_port
sys.argv[0] = "milvus-server"
milvus.main()
"""


class MilvusServer(LogFile):
    """A real Milvus standalone server (PyPI's `milvus` wheel, `milvus-server`; a test dependency)
    with its data under `data_dir` and its proxy on a free loopback port (its other ports it picks
    free itself). Restarted on the same folder, it keeps its collections. A context manager."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir, self.port = data_dir, port or fixed_free_port(MILVUS_PORT)
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 120.0) -> MilvusServer:
        """Starts the server and waits until it is healthy: the wrapper prints its banner once the
        server's /healthz says OK. (Not a client call: pymilvus keeps one connection per address in
        the process, which stays broken for minutes after the server it reached restarts.)"""
        if importlib.util.find_spec("milvus") is None:
            raise RuntimeError("no `milvus` package: the Milvus server is a test dependency "
                               "(`pip install -e '.[dev]'`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "server.log"
        banners = self._banners(log)
        self._log = log.open("ab")
        # Its own session: the wrapper starts the server binary as a child, and stop() ends both.
        extra = [f"--extra-config={key}={value}" for key, value in MILVUS_CONFIG.items()]
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "--data", str(self.data_dir),
                                      "--proxy-port", str(self.port), *extra],
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while not (self._banners(log) > banners and port_open("127.0.0.1", self.port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                exited = self.proc.poll()
                self.stop()
                raise RuntimeError(f"Milvus server did not start on {self.uri} (" + ("timed out" if exited is None
                                   else f"exit code {exited}") + f"); see {log} and {self.data_dir / 'logs'}")
            time.sleep(0.25)
        return self

    @staticmethod
    def _banners(log: Path) -> int:
        return log.read_text(errors="replace").count(BANNER) if log.exists() else 0

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing, as a hung one does."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the wrapper and the server, waited for until the whole process group is gone (a
        server killed mid-shutdown leaves sessions in its etcd that hold up the next start); SIGKILL
        past `timeout`."""
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            deadline = time.monotonic() + timeout
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._group_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL to the wrapper and the server: a crash, nothing flushed; waited for."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            deadline = time.monotonic() + 10
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        self._close_log()

    def _group_alive(self) -> bool:
        assert self.proc is not None
        self.proc.poll()  # reaps the wrapper once it exits
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
