"""A KRaft Apache Kafka cluster on loopback: one combined broker+controller, or three.

The broker runs from the jars `fetch` resolves from Maven Central (ops/kafka/pom.xml) into
`var/kafka/lib`. Each node is a combined broker and controller (`process.roles=broker,controller`)
with a static voter set, its data on disk under the cluster's folder, its ports picked free once
and kept there (`cluster.json`), so a node killed with SIGKILL restarts on its own data and ports.
Three nodes replicate every topic three times and accept a write once two have it
(`min.insync.replicas=2`): one node may be down without producers with `acks=all` stalling.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streams.errors import BrokerError
from streams.kafka.broker import free_port
from streams.testing.supervise import LogFile, wait_or_kill

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J = HERE / "log4j2.properties"
CACHE = Path("var/kafka")
HOST = "127.0.0.1"


def kafka_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def fetch(cache: Path = CACHE, quiet: bool = True) -> Path:
    """The broker's jars (and log4j) resolved from Maven Central into `cache/lib`, once per pom change."""
    lib, stamp = cache / "lib", cache / "lib" / ".pom"
    if stamp.is_file() and stamp.read_text() == POM.read_text():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed: `make kafka-jars` installs Debian's maven and a JDK")
    shutil.rmtree(lib, ignore_errors=True)
    cmd = [mvn, "-B", "-f", str(POM), f"-Dmaven.repo.local={(cache / 'm2').resolve()}",
           "dependency:copy-dependencies", f"-DoutputDirectory={lib.resolve()}", "-DincludeScope=runtime"]
    r = subprocess.run([*cmd[:2], "-q", *cmd[2:]] if quiet else cmd, capture_output=quiet, text=True, timeout=1200)
    if r.returncode != 0:
        raise BrokerError(f"resolving Kafka's jars failed (exit {r.returncode}): {(r.stdout or '')[-1500:]}")
    stamp.write_text(POM.read_text())
    return lib


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise BrokerError("Java is not installed: `make kafka-jars` installs Debian's JDK")
    return found


class Node(LogFile):
    """One combined broker+controller process."""

    def __init__(self, cluster: KafkaCluster, node_id: int) -> None:
        self.cluster, self.node_id = cluster, node_id
        self.dir = cluster.root / f"node-{node_id}"
        self.proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.cluster.ports[str(self.node_id)]["broker"]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    def configure(self) -> None:
        c, ports = self.cluster, self.cluster.ports[str(self.node_id)]
        rf, isr = min(3, len(c.nodes)), min(2, len(c.nodes))
        voters = ",".join(f"{n}@{HOST}:{p['controller']}" for n, p in sorted(c.ports.items()))
        props = {
            "process.roles": "broker,controller", "node.id": self.node_id,
            "controller.quorum.voters": voters, "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{HOST}:{ports['broker']},CONTROLLER://{HOST}:{ports['controller']}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{ports['broker']}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT", "log.dirs": (self.dir / "data").resolve(),
            "default.replication.factor": rf, "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf, "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr, "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": 0, "num.network.threads": 2, "num.io.threads": 2,
            "num.partitions": 1, "auto.create.topics.enable": "false",
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (self.dir / "data" / "meta.properties").is_file():
            # --cluster-id=ID: an id that starts with "-" (base64 may) would be read as an option
            r = subprocess.run([*self._java(), "kafka.tools.StorageTool", "format", f"--cluster-id={c.cluster_id}",
                                f"--config={self.properties}"], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise BrokerError(f"formatting node {self.node_id}'s storage failed: "
                                  f"{r.stdout[-800:]}{r.stderr[-800:]}")

    def _java(self) -> list[str]:
        return [java(), "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J}",
                "-cp", f"{self.cluster.lib.resolve()}/*"]

    def start(self) -> None:
        if self.running:
            return
        self._log = (self.dir / "broker.log").open("ab")
        self.proc = subprocess.Popen([*self._java(), "kafka.Kafka", str(self.properties)], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Asks for a controlled shutdown (SIGTERM): leadership moves to the other nodes first."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """A controlled shutdown, waited for; SIGKILL past `timeout`."""
        self.terminate()
        if self.proc is not None:
            wait_or_kill(self.proc, timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()

    def tail(self, chars: int = 2000) -> str:
        path = self.dir / "broker.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class KafkaCluster:
    """`nodes` combined broker+controller processes with data under `root`; a context manager.
    A folder that holds a cluster already (cluster.json) starts it again on its data and ports."""

    def __init__(self, root: Path, nodes: int = 3, cache: Path = CACHE) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.root = root
        self.lib = fetch(cache)
        state = root / "cluster.json"
        if state.is_file():
            saved = json.loads(state.read_text())
            self.cluster_id, self.ports = saved["cluster_id"], saved["ports"]
        else:
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.ports = {str(n): {"broker": free_port(HOST), "controller": free_port(HOST)}
                          for n in range(1, nodes + 1)}
            root.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"cluster_id": self.cluster_id, "ports": self.ports}))
        self.nodes = {int(n): Node(self, int(n)) for n in self.ports}

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes.values())

    def start(self, timeout: float = 120.0) -> str:
        for node in self.nodes.values():
            node.configure()
        for node in self.nodes.values():
            node.start()
        try:
            self.wait_whole(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def live_brokers(self, timeout: float = 2.0) -> set[int]:
        """The broker ids that the cluster's metadata lists now (empty when no node answers)."""
        up = ",".join(n.address for n in self.nodes.values() if n.running) or self.bootstrap
        try:
            md = AdminClient({"bootstrap.servers": up, "log_level": 0}).list_topics(timeout=timeout)
        except Exception:
            return set()
        return set(md.brokers)

    def wait_whole(self, timeout: float = 120.0) -> None:
        """Until the metadata lists every node as a broker."""
        deadline, want = time.monotonic() + timeout, set(self.nodes)
        while (live := self.live_brokers()) != want:
            dead = [n for n in self.nodes.values() if n.proc is not None and not n.running]
            if dead:
                raise BrokerError(f"Kafka node {dead[0].node_id} exited during start-up:\n{dead[0].tail()}")
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka cluster not whole within {timeout:.0f} s: brokers {sorted(live)} of "
                                  f"{sorted(want)}; logs under {self.root}")
            time.sleep(0.5)

    def kill(self, node_id: int) -> None:
        self.nodes[node_id].kill()

    def restart(self, node_id: int, timeout: float = 120.0) -> None:
        """Stops the node if it runs (SIGTERM), starts it on its data, waits until the cluster is whole."""
        self.nodes[node_id].stop()
        self.nodes[node_id].start()
        self.wait_whole(timeout)

    def stop(self) -> None:
        """Every node at once: stopped one by one, the last ones would wait for a controller quorum."""
        for node in self.nodes.values():
            node.terminate()
        for node in self.nodes.values():
            node.stop()

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

