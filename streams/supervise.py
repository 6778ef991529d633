"""Child processes: `iu worker`s (the demo and the tests drive real ones, so a restart really is a
new process that must recover its state from the changelog) and a Milvus server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.broker import free_port, port_open


class WorkerError(RuntimeError):
    pass


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        """`env`: IU_* settings on top of this process's environment (IU_WEB_PORT must be free)."""
        self.env = {**os.environ, **env}
        self.url = f"http://{self.env.get('IU_WEB_HOST', '127.0.0.1')}:{self.env.get('IU_WEB_PORT', '6066')}"
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

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

    def get(self, path: str, timeout: float = 30.0) -> dict:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return {"http_status": e.code, **json.loads(e.read() or b"{}")}

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
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
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


class MilvusServer:
    """A real Milvus standalone server (PyPI's `milvus` wheel, `milvus-server`; a test dependency)
    with its data under `data_dir` and its proxy on a free loopback port (its other ports it picks
    free itself). Restarted on the same folder, it keeps its collections. A context manager."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir, self.port = data_dir, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 120.0) -> MilvusServer:
        from pymilvus import MilvusClient  # only this class needs the client

        exe = Path(sys.executable).parent / "milvus-server"
        if not exe.exists():
            raise RuntimeError(f"no {exe}: the Milvus server is a test dependency (`pip install -e '.[dev]'`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.data_dir / "server.log").open("ab")
        # Its own session: the wrapper starts the server binary as a child, and stop() ends both.
        self.proc = subprocess.Popen([str(exe), "--data", str(self.data_dir), "--proxy-port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Milvus server did not start on {self.uri}; see {self.data_dir / 'server.log'}")
            if port_open("127.0.0.1", self.port):
                try:
                    MilvusClient(self.uri, timeout=5).list_collections(timeout=5)
                    return self
                except Exception:
                    pass
            time.sleep(0.25)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the wrapper and the server; SIGKILL past `timeout`."""
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(10)
            with contextlib.suppress(ProcessLookupError):  # the server binary, if it outlived the wrapper
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
