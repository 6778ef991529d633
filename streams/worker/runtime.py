"""Everything a worker loads before it serves a model: the model, its vector store, the catalog."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from pymilvus import MilvusClient

from models.checkpoint import load_model
from models.data.contract import Item
from models.inference import InterestEncoder, best_device
from streams.errors import WorkerError
from streams.kafka.control import LIVE, Deployment, control_records, published_items
from streams.monitoring.metrics import WorkerMetrics
from streams.settings import Settings
from streams.vectors.catalog import START_UP_TIMEOUT_S, Catalog
from streams.vectors.store import VectorStore, connect
from streams.worker.context import WorkerContext
from streams.worker.processor import Processor

log = logging.getLogger(__name__)
CATALOG_CHUNK = 4096  # catalog records projected and written per step


def live_deployment(settings: Settings, bootstrap: str) -> Deployment:
    """What to serve at start: the live version announced on iu.models, or else IU_MODEL's."""
    announced = Deployment.from_json(control_records(bootstrap).get(LIVE))
    return announced or Deployment("", str(settings.model_path))


def load_processor(settings: Settings, metrics: WorkerMetrics, client: MilvusClient | None = None,
                   deployment: Deployment | None = None, items: Sequence[Item] = (),
                   categories: MutableMapping[str, tuple[str, ...]] | None = None) -> Processor:
    """A processor serving `deployment` (default: IU_MODEL's), its version's collections filled with the
    trained items and every published item in `items` (cold ones projected from their text by this
    model); on `client` (default: a connection to IU_MILVUS_URI's Milvus). Raises
    FileNotFoundError (no trained model), VectorStoreError (Milvus unreachable), WorkerError (the
    folder holds another version than announced)."""
    deployment = deployment or Deployment("", str(settings.model_path))
    model, meta = load_model(Path(deployment.path))
    version = meta["model_version"]
    if deployment.version and deployment.version != version:
        raise WorkerError(f"{deployment.path} holds model {version}, not the announced {deployment.version}")
    encoder = InterestEncoder(model, best_device(settings.device), version)
    client = client or connect(settings.milvus_target)
    store = VectorStore(client, encoder.cfg.dim, settings.milvus_timeout_s, metrics, version)
    catalog = Catalog(encoder, store, meta["item_ids"], categories)
    items_csv = Path(meta.get("dataset", "")) / "items.csv"
    catalog.publish_trained(items_csv if items_csv.is_file() else None)
    written = dict(catalog.titles)  # the trained items, as publish_trained wrote them
    for k in range(0, len(items), CATALOG_CHUNK):
        rows = catalog.add(items[k:k + CATALOG_CHUNK])
        news = [r for r in rows if catalog.index[r.item_id] > catalog.trained or written.get(r.item_id) != r.title]
        if news:
            store.upsert_items(news, bulk_timeout_s=START_UP_TIMEOUT_S)
        log.info("model %s: %d of %d published items placed", version, min(k + CATALOG_CHUNK, len(items)),
                 len(items))
    processor = Processor(encoder, catalog, store, settings, metrics)
    processor.source = str(Path(deployment.path).resolve())
    return processor


async def load_beside(ctx: WorkerContext, deployment: Deployment) -> Processor:
    """A processor for `deployment` beside the one the worker serves, loaded in a thread: on the same
    Milvus connection, with every published item, keeping categories in the map the monitor reads."""
    items = await asyncio.to_thread(published_items, ctx.bootstrap)
    return await asyncio.to_thread(load_processor, ctx.settings, ctx.metrics, ctx.processor.vectors.store.client,
                                   deployment, items, ctx.processor.catalog.categories)


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
