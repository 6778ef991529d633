"""Checkpoint directories: safetensors weights, JSON config, item vocabulary, model version.

The version is derived from the weights' hash, so two directories with the same version
hold the same model, and every recommendation can name the model that made it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.config import ModelConfig
from models.multiview import MultiViewModel

WEIGHTS, CONFIG, VOCAB, META = "model.safetensors", "config.json", "items.json", "meta.json"


def save_model(model: MultiViewModel, item_ids: list[str], folder: Path, name: str, extra: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()[:10]
    version = f"{name}-{digest}"
    (folder / CONFIG).write_text(json.dumps(model.cfg.to_json(), indent=2))
    (folder / VOCAB).write_text(json.dumps(item_ids))
    meta = {"model_version": version, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    (folder / META).write_text(json.dumps(meta, indent=2))
    return version


def load_model(folder: Path) -> tuple[MultiViewModel, dict]:
    if not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"no trained model in {folder}: run `iu train --out {folder}` first")
    cfg = ModelConfig.from_json(json.loads((folder / CONFIG).read_text()))
    model = MultiViewModel(cfg)
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    meta = json.loads((folder / META).read_text())
    meta["item_ids"] = json.loads((folder / VOCAB).read_text())
    return model.eval(), meta


def state_equal(a: MultiViewModel, b: MultiViewModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
