"""Running a worker as a child process: the demo and the tests drive real `iu worker`s this way,
so a restart really is a new process that must recover its state from the changelog."""

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
        self.wait_ready(timeout)
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

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
