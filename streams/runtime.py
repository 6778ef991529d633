"""Everything a worker loads before it consumes: the model, the vector store, the catalog."""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import load_model
from models.inference import InterestEncoder, best_device
from streams.catalog import Catalog
from streams.processor import Processor
from streams.settings import Settings
from streams.vectors import VectorStore, connect


def load_processor(settings: Settings) -> Processor:
    """Raises FileNotFoundError (no trained model) or VectorStoreError (Milvus unreachable)."""
    model, meta = load_model(settings.model_path)
    encoder = InterestEncoder(model, best_device(settings.device), meta["model_version"])
    store = VectorStore(connect(settings.milvus_target), encoder.cfg.dim)
    catalog = Catalog(encoder, store, meta["item_ids"])
    items_csv = Path(meta.get("dataset", "")) / "items.csv"
    catalog.publish_trained(items_csv if items_csv.is_file() else None)
    return Processor(encoder, catalog, store, settings)
