"""Everything a worker loads before it consumes: the model, the vector store, the catalog."""

from __future__ import annotations

import json
from pathlib import Path

from models.checkpoint import load_model
from models.inference import InterestEncoder, best_device
from streams.errors import WorkerError
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.vectors.catalog import Catalog
from streams.vectors.store import VectorStore, connect
from streams.worker.processor import Processor


def load_processor(settings: Settings, metrics: WorkerMetrics) -> Processor:
    """Raises FileNotFoundError (no trained model) or VectorStoreError (Milvus unreachable)."""
    model, meta = load_model(settings.model_path)
    encoder = InterestEncoder(model, best_device(settings.device), meta["model_version"])
    store = VectorStore(connect(settings.milvus_target), encoder.cfg.dim, settings.milvus_timeout_s, metrics)
    catalog = Catalog(encoder, store, meta["item_ids"])
    items_csv = Path(meta.get("dataset", "")) / "items.csv"
    catalog.publish_trained(items_csv if items_csv.is_file() else None)
    return Processor(encoder, catalog, store, settings, metrics)


def claim_tables(settings: Settings, tabledir: Path, cluster: str) -> None:
    """RocksDB tables hold the offsets of the broker they were built on; met with another (a new
    embedded broker, another cluster) they would stand past its ends or on other records. Refuses
    them with what to do; then records that the state folder belongs to `cluster` now. In-memory
    tables are rebuilt from the broker at every start and need no check."""
    record = settings.state_dir / "cluster.json"
    built_on = json.loads(record.read_text())["cluster_id"] if record.is_file() else cluster
    tables = tabledir.is_dir() and any(tabledir.iterdir())
    if settings.store.startswith("rocksdb://") and tables and built_on != cluster:
        raise WorkerError(f"the RocksDB tables in {tabledir} were built on another broker (cluster {built_on}; "
                          f"this one is {cluster}): delete {settings.state_dir} to rebuild them from this broker's "
                          "changelog, or set IU_KAFKA_BOOTSTRAP to the broker they came from")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"cluster_id": cluster}))
