"""All configuration in one typed object, read from `IU_*` environment variables.

Defaults run embedded with zero setup: data, models and vector files under `var/`.
A bad value fails at start-up with one line naming the variable, not deep in a worker.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "IU_"


MILVUS_SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class SettingsError(ValueError):
    pass


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _opt(default: object, doc: str) -> Any:
    """A setting with its documentation, which `reference_table` renders for README.md and `iu config`."""
    return field(default=default, metadata={"doc": doc})


def _remedy(name: str) -> str:
    """What to do about a bad value, in the same line: what the setting is, and its default."""
    f = next(f for f in fields(Settings) if f.name == name)
    return f"{PREFIX}{name.upper()} is: {f.metadata['doc']}; default {f.default!r}. Fix or unset it " \
           "(`iu config --defaults` lists every setting)"


@dataclass(frozen=True)
class Settings:
    """One worker's or command's whole configuration; every field is the env var `IU_<NAME>`."""

    data_dir: Path = _opt(Path("var/data"), "where data sets are cached (`events.csv`, `items.csv`)")
    state_dir: Path = _opt(Path("var/faust"), "Faust's local data (RocksDB tables); one per worker on a host")
    model_dir: Path = _opt(Path("var/models"), "where trained models live, one folder each")
    device: str = _opt("auto", "torch device for the encoder: `auto` (CUDA when present), `cpu`, `cuda`")
    compute_threads: int = _opt(0, "CPU threads of the worker's encoder and numpy (BLAS) on a full micro-batch "
                                "(a backlog); one fewer on partial ones, left to the event loop; 0: one per core")
    gil_switch_ms: float = _opt(0.5, "longest a worker thread keeps the GIL while another waits for it "
                                "(Python's default: 5); shorter, the event loop's turn comes sooner")
    scenarios: tuple[str, ...] = _opt(("home", "search", "video"),
                                      "scenarios, comma-separated (must be among the model's)")
    seed: int = _opt(2020, "default seed for training and synthetic data")
    partitions: int = _opt(4, "partitions of every event topic, the recommendations topic and the state changelog")
    kafka_bootstrap: str = _opt("", "`host:port` of a Kafka cluster; empty: `iu` starts the embedded Tansu broker")
    broker_dir: Path = _opt(Path("var/broker"), "the embedded broker's record (address, process, cluster id) "
                            "and log; `iu` commands without IU_KAFKA_BOOTSTRAP find it there")
    broker_port: int = _opt(19092, "the embedded broker's port on 127.0.0.1, the same across worker restarts")
    replication_factor: int = _opt(0, "copies of every topic the worker creates, Faust's changelog and leader "
                                   "topics included; 0: 3, or the cluster's broker count when smaller")
    session_timeout_s: float = _opt(0.0, "how long the consumer group waits for a silent worker before its "
                                     "partitions go to the others; 0: 2 on Tansu, Faust's 60 on Kafka (which "
                                     "takes no less than its group.min.session.timeout.ms, 6 by default)")
    guarantee: str = _opt("at_least_once", "`at_least_once`, or `exactly_once` (Apache Kafka only: Faust's "
                          "transactions; measured *not* to hold for this pipeline yet: README, Guarantees)")
    broker_profile: str = _opt("auto", "`auto` (tansu when embedded, else kafka), `tansu` or `kafka`: "
                               "which broker workarounds apply")
    milvus_uri: str = _opt("", "a Milvus server (`http://host:19530`); empty: milvus-lite at `var/milvus.db`")
    milvus_timeout_s: float = _opt(5.0, "longest wait for one Milvus call before the store counts as down")
    pending_vectors: int = _opt(100_000, "user vectors, and apart catalog items, kept for Milvus while it is down; "
                                "the oldest go beyond")
    retrieval: str = _opt("auto", "where candidates come from: `local` (exact, the worker's item table), `milvus` "
                          "(ANN search), `auto` (local on milvus-lite, milvus with a server)")
    model: str = _opt("ml-100k", "the model the worker serves: a folder under `IU_MODEL_DIR`, or a path; the "
                      "live version announced with `iu model deploy` takes its place")
    model_grace_s: float = _opt(600.0, "how long a model version's Milvus collections are kept after workers "
                                "switched away from it (a rollback within it finds them)")
    shadow_promote_trials: int = _opt(0, "promote a shadow model by itself once it has this many trials paired "
                                      "with the live model's and hits significantly more often (McNemar, p < "
                                      "0.05); 0: only `iu model promote` does")
    rollback_window_s: float = _opt(0.0, "after a promotion, roll back by itself when the hit-rate drift detector "
                                    "fires downward within this many seconds; 0: never by itself")
    app_id: str = _opt("interest-updater", "Faust app id: the consumer group and the prefix of its internal topics")
    store: str = _opt("memory://", "Faust table store: `memory://` (state rebuilt from the changelog at start) or "
                      "`rocksdb://` (local RocksDB under `IU_STATE_DIR`, changelog-backed)")
    web_host: str = _opt("127.0.0.1", "the worker's HTTP interface binds here")
    web_advertised_host: str = _opt("", "the host other workers reach this one's HTTP interface at (they proxy "
                                    "a user's requests to the worker that owns the user's partition); empty: "
                                    "IU_WEB_HOST, or this machine's host name when that is a wildcard (0.0.0.0, ::)")
    web_port: int = _opt(6066, "the worker's HTTP port")
    http_queue: int = _opt(64, "`/users/...` requests a worker computes or holds for its compute thread (which "
                           "micro-batches share) at once; past it they are answered 503 with Retry-After")
    batch_size: int = _opt(256, "most events in one micro-batch")
    batch_target: int = _opt(128, "events a micro-batch waits for when the worker's own share of the load "
                             "brings fewer: each batch pays one encoder forward, one Milvus search and one "
                             "broker round trip, so fewer, larger batches cost less CPU per event; 0: take "
                             "what has come in (see streams/core/batching.py)")
    batch_wait_ms: int = _opt(250, "longest wait for a micro-batch to reach IU_BATCH_TARGET: the latency "
                              "given for CPU per event (see ops/bench/RESULTS.md)")
    delivery_timeout_s: float = _opt(60.0, "longest wait for the broker to acknowledge a batch's records; past it "
                                     "the worker exits uncommitted (code 75) and is restarted")
    top_k: int = _opt(10, "recommendations per user")
    diversity: float = _opt(0.2, "MMR weight of diversity against relevance, 0..1 (0: by relevance only)")
    quality_window: int = _opt(1000, "trials in the rolling online hit rate (per scenario and recommender)")
    monitor_users: int = _opt(100_000, "(user, scenario) pairs whose last lists the online evaluation "
                              "remembers (LRU)")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as e:
                raise SettingsError(f"{PREFIX}{f.name.upper()}={raw!r}: {e}; {_remedy(f.name)}") from None
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        checks = {
            "broker_profile": self.broker_profile in ("auto", "tansu", "kafka"),
            "retrieval": self.retrieval in ("auto", "local", "milvus"),
            "guarantee": self.guarantee == "at_least_once" or (self.guarantee == "exactly_once" and not self.tansu),
            "store": self.store.startswith(("memory://", "rocksdb://")),
            "diversity": 0.0 <= self.diversity <= 1.0,
            "partitions": self.partitions >= 1,
            "replication_factor": self.replication_factor >= 0,
            "session_timeout_s": self.session_timeout_s >= 0,
            "compute_threads": self.compute_threads >= 0,
            "gil_switch_ms": self.gil_switch_ms > 0,
            "batch_size": self.batch_size >= 1,
            "batch_target": 0 <= self.batch_target <= self.batch_size,
            "batch_wait_ms": self.batch_wait_ms >= 0,
            "top_k": self.top_k >= 1,
            "quality_window": self.quality_window >= 1,
            "monitor_users": self.monitor_users >= 1,
            "milvus_timeout_s": self.milvus_timeout_s > 0,
            "model_grace_s": self.model_grace_s >= 0,
            "shadow_promote_trials": self.shadow_promote_trials >= 0,
            "rollback_window_s": self.rollback_window_s >= 0,
            "delivery_timeout_s": self.delivery_timeout_s > 0,
            "pending_vectors": self.pending_vectors >= 1,
            "web_port": 0 < self.web_port < 65536,
            "http_queue": self.http_queue >= 1,
            "broker_port": 0 < self.broker_port < 65536,
        }
        for name, ok in checks.items():
            if not ok:
                raise SettingsError(f"{PREFIX}{name.upper()}={getattr(self, name)!r} is out of range; {_remedy(name)}")

    @property
    def thread_budget(self) -> tuple[int, int]:
        """(partial, full) micro-batch thread counts: see streams/worker/threads.py for why they differ."""
        full = self.compute_threads or usable_cores()
        return max(1, full - 1), full

    @property
    def advertised_host(self) -> str:
        """Where other workers send this worker's users' requests: never a wildcard, which would name
        every worker alike (and, dialled, the caller itself)."""
        if self.web_advertised_host:
            return self.web_advertised_host
        return socket.gethostname() if self.web_host in WILDCARD_HOSTS else self.web_host

    @property
    def embedded(self) -> bool:
        """No cluster named: `iu` starts a Tansu broker itself."""
        return not self.kafka_bootstrap

    @property
    def tansu(self) -> bool:
        """Apply the Tansu workarounds (see streams/worker/app.py)."""
        return self.broker_profile == "tansu" or (self.broker_profile == "auto" and self.embedded)

    @property
    def local_retrieval(self) -> bool:
        """Candidates by exact search over the worker's item table rather than a Milvus search. The
        worker holds every item vector anyway (they are the encoder's inputs); milvus-lite's search
        costs ~2 ms a query in Python (ops/bench/RESULTS.md), a Milvus server's does not."""
        return self.retrieval == "local" or (self.retrieval == "auto" and not self.milvus_server)

    @property
    def milvus_server(self) -> bool:
        """A Milvus server by URI, rather than a milvus-lite data file."""
        return self.milvus_target.startswith(MILVUS_SERVER_SCHEMES)

    @property
    def milvus_target(self) -> str:
        return self.milvus_uri or str(Path("var") / "milvus.db")

    @property
    def model_path(self) -> Path:
        path = Path(self.model)
        return path if path.is_absolute() or path.exists() else self.model_dir / self.model


def _parse(type_name: object, raw: str) -> object:
    t = str(type_name)
    if t == "Path":
        return Path(raw)
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    if t.startswith("tuple"):
        items = tuple(x.strip() for x in raw.split(",") if x.strip())
        if not items:
            raise ValueError("expected a comma-separated list")
        return items
    return raw


def env_value(value: object) -> str:
    """A setting as its env var would spell it."""
    return ",".join(value) if isinstance(value, tuple) else str(value)


def reference_table(settings: Settings | None = None) -> str:
    """The configuration reference in Markdown: defaults, or with `settings` the values in force too.
    README.md embeds the defaults' table and a test keeps the two equal."""
    head = "| variable | default | meaning |\n|---|---|---|" if settings is None else \
        "| variable | value | default | meaning |\n|---|---|---|---|"
    rows = []
    for f in fields(Settings):
        default = f"`{env_value(f.default)}`" if env_value(f.default) else "(empty)"
        now = [] if settings is None else [f"`{env_value(getattr(settings, f.name))}`"]
        rows.append("| " + " | ".join([f"`{PREFIX}{f.name.upper()}`", *now, default, f.metadata["doc"]]) + " |")
    return "\n".join([head, *rows])
