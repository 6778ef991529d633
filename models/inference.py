"""The inference API the stream calls: batched transformer view, O(d) cheap views, fusion.

One micro-batch of touched users costs one forward pass (`encode`), whatever its size.
On CUDA the forward runs under bf16 autocast; everything runs on the CPU when no GPU is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_model
from models.data.dataset import UserSeq
from models.multiview import MultiViewModel, gap_buckets
from models.views import ViewState, closed_form


def best_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pad_windows(histories: list[UserSeq], max_len: int) -> dict[str, np.ndarray]:
    """The last `max_len` events of each history, right-padded to the longest one, as (B, L) int64 arrays.

    Not to `max_len` itself: attention is causal and padding comes last, so trailing padding changes no
    output, while the forward's cost grows faster than linearly in L (a batch of 96 windows on 2 CPU
    cores: 14 ms at L=25, 37 ms at L=50), and a stream's batches are often of short histories."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = {k: np.zeros((len(histories), width), np.int64) for k in ("items", "actions", "scens", "gaps")}
    lengths = np.zeros(len(histories), np.int64)
    for b, h in enumerate(histories):
        n = min(len(h), max_len)
        lengths[b] = n
        sl = slice(len(h) - n, len(h))
        out["items"][b, :n] = h.items[sl]
        out["actions"][b, :n] = h.actions[sl]
        out["scens"][b, :n] = h.scenarios[sl]
        out["gaps"][b, :n] = gap_buckets(h.ts)[sl]
    out["lengths"] = lengths
    return out


@torch.inference_mode()
def top_inner_product(table: torch.Tensor, queries: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`limit` rows of `table` by inner product with each query, best first: (rows, scores),
    each (B, limit). One matmul and one topk on the table's device: exact, and at catalog sizes a
    worker holds anyway cheaper than an ANN round trip (ops/bench/vectors.py)."""
    q = torch.as_tensor(queries, dtype=torch.float32, device=table.device)
    top = torch.topk(q @ table.T, min(limit, table.shape[0]), dim=1)
    return top.indices.cpu().numpy(), top.values.float().cpu().numpy()


class InterestEncoder:
    def __init__(self, model: MultiViewModel, device: torch.device | None = None, model_version: str = "") -> None:
        self.device = device or best_device()
        self.model = model.to(self.device).eval()
        self.model_version = model_version
        self.cfg = model.cfg
        self.layout = model.layout
        with torch.inference_mode():
            self.device_table = model.item_table().float()
        self.table = self.device_table.cpu().numpy()

    @classmethod
    def load(cls, folder: Path, device: str = "auto") -> InterestEncoder:
        model, meta = load_model(folder)
        return cls(model, best_device(device), meta["model_version"])

    @property
    def view_names(self) -> tuple[str, ...]:
        return self.model.view_names

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    @torch.inference_mode()
    def encode(self, windows: dict[str, np.ndarray]) -> np.ndarray:
        """One batched forward: the transformer view after the last event of each window, (B, d)."""
        t = {k: torch.as_tensor(v, device=self.device) for k, v in windows.items()}
        last = (t["lengths"] - 1).clamp(min=0)
        with self._autocast():
            h = self.model.encode_last(self.device_table, t["items"], t["actions"], t["scens"], t["gaps"], last)
        return h.float().cpu().numpy()

    @torch.inference_mode()
    def fuse(
        self, short: np.ndarray, views: np.ndarray, present: np.ndarray, scens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused user vectors (B, d) for target scenarios (B,), and the fusion weights (B, 1+V)."""
        dev = self.device
        fused, w = self.model.fuse(
            torch.as_tensor(short, device=dev),
            torch.as_tensor(views, device=dev),
            torch.as_tensor(present, device=dev),
            torch.as_tensor(scens, device=dev),
        )
        return fused.float().cpu().numpy(), w.float().cpu().numpy()

    @torch.inference_mode()
    def project_text(self, text_vecs: np.ndarray) -> np.ndarray:
        """Vectors for items the model never saw, from their MiniLM text embeddings (n, text_dim)."""
        out = self.model.text_proj(torch.as_tensor(text_vecs, dtype=torch.float32, device=self.device))
        return out.float().cpu().numpy()

    def top_items(self, users: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`limit` table rows for each user vector (row 0, padding, never): rows and scores."""
        rows, scores = top_inner_product(self.device_table[1:], users, limit)
        return rows + 1, scores

    def add_items(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors to the table (catalog items published after training); their indices."""
        start = self.table.shape[0]
        self.table = np.concatenate([self.table, vectors.astype(np.float32)])
        self.device_table = torch.as_tensor(self.table, device=self.device)
        return np.arange(start, start + len(vectors))

    def update_items(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Overwrite item vectors in place (a cold item whose text changed)."""
        self.table[rows] = vectors
        self.device_table = torch.as_tensor(self.table, device=self.device)

    def new_state(self) -> ViewState:
        return ViewState.empty(self.layout.n, self.cfg.dim)

    def apply_event(self, state: ViewState, item: int, action: int, scen: int, ts: int) -> None:
        """The O(V*d) online update of the cheap views."""
        state.update(self.layout, self.table[item], action, scen, ts)

    def offline_views(self, history: UserSeq) -> tuple[np.ndarray, np.ndarray]:
        """The cheap views after a whole history from the closed form: (V, d), present (V,)."""
        cf = closed_form(self.layout, history.actions, history.scenarios, history.ts)
        return (cf.weights.T @ self.table[history.items]).astype(np.float32), cf.count > 0

    def user_vectors(self, histories: list[UserSeq], scens: np.ndarray) -> dict[str, np.ndarray]:
        """Offline path: transformer view, cheap views and fused vectors for target scenarios."""
        short = self.encode(pad_windows(histories, self.cfg.max_len))
        pairs = [self.offline_views(h) for h in histories]
        views = np.stack([p[0] for p in pairs])
        present = np.stack([p[1] for p in pairs])
        fused, weights = self.fuse(short, views, present, scens)
        return {"short": short, "fused": fused, "weights": weights}
