"""All configuration in one typed object, read from `IU_*` environment variables.

Defaults run embedded with zero setup: data, models and vector files under `var/`.
A bad value fails at start-up with one line naming the variable, not deep in a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "IU_"


MILVUS_SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """Field docs double as the configuration reference."""

    data_dir: Path = Path("var/data")  # where data sets are cached (events.csv, items.csv)
    model_dir: Path = Path("var/models")  # where trained models live, one folder each
    device: str = "auto"  # torch device for the encoder: auto (CUDA when present), cpu, cuda
    scenarios: tuple[str, ...] = ("home", "search", "video")  # comma-separated in the env var
    seed: int = 2020  # default seed for training and synthetic data
    partitions: int = 4  # partitions of every event topic and of the recommendations topic
    kafka_bootstrap: str = ""  # host:port of a Kafka cluster; empty: iu starts the embedded Tansu broker
    broker_profile: str = "auto"  # auto (tansu when embedded, else kafka), tansu or kafka: broker workarounds
    milvus_uri: str = ""  # a Milvus server (http://host:19530); empty: milvus-lite at var/milvus.db
    milvus_timeout_s: float = 5.0  # longest wait for one Milvus call before the store counts as down
    pending_vectors: int = 100_000  # user vectors kept for Milvus while it is down; the oldest go beyond
    retrieval: str = "auto"  # candidates from: local (exact, worker memory), milvus (ANN), auto (local on milvus-lite)
    model: str = "ml-100k"  # the model the worker serves: a folder under IU_MODEL_DIR, or a path
    app_id: str = "interest-updater"  # Faust app id: the consumer group and the prefix of its internal topics
    store: str = "memory://"  # Faust table store: memory:// (state rebuilt from the changelog) or rocksdb://
    state_dir: Path = Path("var/faust")  # Faust's local data (RocksDB tables); one per worker on a host
    web_host: str = "127.0.0.1"  # the worker's HTTP interface binds here
    web_port: int = 6066  # the worker's HTTP port
    batch_size: int = 256  # most events in one micro-batch
    batch_wait_ms: int = 50  # longest wait to fill a micro-batch (latency against CPU per event)
    delivery_timeout_s: float = 60.0  # longest wait for a batch's records to be acknowledged; then the worker exits
    top_k: int = 10  # recommendations per user
    diversity: float = 0.2  # MMR weight of diversity against relevance, 0..1 (0: rank by relevance only)
    quality_window: int = 1000  # trials in the rolling online hit rate (per scenario and recommender)
    monitor_users: int = 100_000  # (user, scenario) pairs whose last lists the online evaluation remembers

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
                raise SettingsError(f"{PREFIX}{f.name.upper()}={raw!r}: {e}") from None
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        checks = {
            "broker_profile": self.broker_profile in ("auto", "tansu", "kafka"),
            "retrieval": self.retrieval in ("auto", "local", "milvus"),
            "store": self.store.startswith(("memory://", "rocksdb://")),
            "diversity": 0.0 <= self.diversity <= 1.0,
            "partitions": self.partitions >= 1,
            "batch_size": self.batch_size >= 1,
            "top_k": self.top_k >= 1,
            "quality_window": self.quality_window >= 1,
            "monitor_users": self.monitor_users >= 1,
            "milvus_timeout_s": self.milvus_timeout_s > 0,
            "delivery_timeout_s": self.delivery_timeout_s > 0,
            "pending_vectors": self.pending_vectors >= 1,
            "web_port": 0 < self.web_port < 65536,
        }
        for name, ok in checks.items():
            if not ok:
                raise SettingsError(f"{PREFIX}{name.upper()}={getattr(self, name)!r} is out of range")

    @property
    def embedded(self) -> bool:
        """No cluster named: `iu` starts a Tansu broker itself."""
        return not self.kafka_bootstrap

    @property
    def tansu(self) -> bool:
        """Apply the Tansu workarounds (see streams/app.py)."""
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
