"""Child processes: `iu worker`s (the demo and the tests drive real ones, so a restart really is a
new process that must recover its state from the changelog) and a `milvus-lite server`."""

from __future__ import annotations

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


class MilvusLiteServer:
    """`milvus-lite server` on a free loopback port: the Milvus-server mode, for the tests that
    share one vector store between workers or take it away mid-replay."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> MilvusLiteServer:
        exe = Path(sys.executable).parent / "milvus-lite"
        self.proc = subprocess.Popen([str(exe), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milvus-lite server did not start on {self.uri}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> MilvusLiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
