"""Training: next-item prediction with full-softmax cross-entropy (sampled softmax optional).

Each user's training sequence is cut into windows of `max_len` inputs with half-window
stride; a position contributes to the loss only in the first window that covers it, so every
target is predicted once per epoch with at least half a window of context. The cheap views
inside a window continue the closed-form state of the events before it (`carry`), so
training sees exactly the view values the online state will hold.

Both the fused vector (for the target's scenario) and the transformer view alone are
trained with their own cross-entropy, so the transformer view is a valid SASRec on its
own and the gain of fusion can be measured inside one model. A third loss teaches the
text projection to land cold items where trained items of similar text sit.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.config import ModelConfig, TrainConfig
from models.data.dataset import UserSeq
from models.evaluate import evaluate
from models.inference import InterestEncoder
from models.multiview import MultiViewModel, gap_buckets
from models.views import ViewLayout, closed_form, effective_ts


@dataclass
class Windows:
    """All training windows of a data set as (W, L) arrays plus the sparse carry state."""

    arrays: dict[str, np.ndarray]
    carry_rows: np.ndarray  # (nnz,) window*V + view
    carry_items: np.ndarray  # (nnz,)
    carry_vals: np.ndarray  # (nnz,) normalised weight
    carry_ptr: np.ndarray  # (W+1,) slice of the triplets belonging to each window

    def __len__(self) -> int:
        return len(self.carry_ptr) - 1


def build_windows(train: list[UserSeq], layout: ViewLayout, max_len: int) -> Windows:
    stride = max(1, max_len // 2)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("items", "actions", "scens", "gaps", "ts", "log_w",
                                                         "targets", "target_scens", "loss_mask", "carry_log_w",
                                                         "carry_ts")}
    rows, items, vals, ptr = [], [], [], [0]
    V = layout.n
    for u in train:
        n_in = len(u) - 1
        if n_in < 1:
            continue
        gaps, ts = gap_buckets(u.ts), effective_ts(u.ts).astype(np.float64)
        log_w = layout.log_weights(u.actions, u.scenarios)
        prev_end, end = 0, min(n_in, max_len)
        while True:
            start = max(0, end - max_len)
            n = end - start
            sl = slice(start, end)

            def pad(a: np.ndarray, fill: float = 0, n: int = n) -> np.ndarray:
                out = np.full((max_len, *a.shape[1:]), fill, dtype=a.dtype)
                out[:n] = a
                return out

            cols["items"].append(pad(u.items[sl]))
            cols["actions"].append(pad(u.actions[sl]))
            cols["scens"].append(pad(u.scenarios[sl]))
            cols["gaps"].append(pad(gaps[sl]))
            cols["ts"].append(pad(ts[sl], ts[end - 1]))
            cols["log_w"].append(pad(log_w[sl], -np.inf))
            cols["targets"].append(pad(u.items[start + 1 : end + 1]))
            cols["target_scens"].append(pad(u.scenarios[start + 1 : end + 1]))
            mask = np.zeros(max_len, bool)
            mask[max(prev_end, start) - start : n] = True
            cols["loss_mask"].append(mask)
            if start > 0:
                cf = closed_form(layout, u.actions[:start], u.scenarios[:start], u.ts[:start])
                ev, vw = np.nonzero(cf.weights)
                rows.append((len(ptr) - 1) * V + vw)
                items.append(u.items[:start][ev])
                vals.append(cf.weights[ev, vw])
                cols["carry_log_w"].append(cf.log_w)
                cols["carry_ts"].append(np.array(ts[start - 1]))
            else:
                cols["carry_log_w"].append(np.full(V, -np.inf))
                cols["carry_ts"].append(np.array(ts[0]))
            ptr.append(ptr[-1] + (len(rows[-1]) if start > 0 else 0))
            if end == n_in:
                break
            prev_end, end = end, min(n_in, end + stride)
    return Windows(
        {k: np.stack(v) for k, v in cols.items()},
        _cat(rows, np.int64), _cat(items, np.int64), _cat(vals, np.float32), np.array(ptr, np.int64),
    )


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _batch(w: Windows, idx: np.ndarray, n_views: int, n_rows: int, device: torch.device) -> dict[str, torch.Tensor]:
    t = {k: torch.as_tensor(v[idx], device=device) for k, v in w.arrays.items()}
    parts = [np.arange(w.carry_ptr[i], w.carry_ptr[i + 1]) for i in idx]
    sel = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    # Re-number rows from window order to batch order.
    local = np.repeat(np.arange(len(idx)), [len(p) for p in parts]) * n_views + w.carry_rows[sel] % n_views
    t["carry"] = torch.sparse_coo_tensor(
        torch.as_tensor(np.stack([local, w.carry_items[sel]]), device=device),
        torch.as_tensor(w.carry_vals[sel], device=device),
        (len(idx) * n_views, n_rows),
        check_invariants=False,
    ).coalesce()
    return t


def _ce(user: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: int) -> torch.Tensor:
    if negatives <= 0:
        logits = user @ table.T
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets)
    neg = torch.randint(1, table.shape[0], (negatives,), device=user.device)
    pos = (user * table[targets]).sum(-1, keepdim=True)
    logits = torch.cat([pos, user @ table[neg].T], dim=1)
    logits[:, 1:] = logits[:, 1:].masked_fill(neg.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    return F.cross_entropy(logits, torch.zeros_like(targets))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def extend_vocabulary(model: MultiViewModel, new_text: np.ndarray) -> MultiViewModel:
    """The model with `len(new_text)` items appended to its vocabulary (items published after it was
    trained): their rows start at their text projection, where the model already serves them, and are
    learned from there where training data has them."""
    if not len(new_text):
        return model
    n_old = model.cfg.n_items
    cfg = ModelConfig.from_json({**model.cfg.to_json(), "n_items": n_old + len(new_text)})
    bigger = MultiViewModel(cfg)
    state = model.state_dict()
    sized = {"item_emb.weight", "trained_mask", "item_text"}
    bigger.load_state_dict({k: v for k, v in state.items() if k not in sized}, strict=False)
    text = torch.as_tensor(new_text, dtype=torch.float32)
    with torch.no_grad():
        bigger.item_text.copy_(torch.cat([state["item_text"].cpu(), text]))
        bigger.trained_mask.copy_(torch.cat([state["trained_mask"].cpu(), torch.zeros(len(text), dtype=torch.bool)]))
        bigger.item_emb.weight.copy_(torch.cat([state["item_emb.weight"].cpu(), model.text_proj(text)]))
    return bigger


def train(
    item_text: np.ndarray,
    train_users: list[UserSeq],
    valid_users: list[UserSeq],
    cfg: ModelConfig,
    tc: TrainConfig,
    device: torch.device,
    progress: bool = True,
    start: MultiViewModel | None = None,
    budget_s: float = 0.0,
    on_best: Callable[[MultiViewModel, dict], None] | None = None,
) -> tuple[MultiViewModel, dict]:
    """`item_text` (n_items, text_dim): the MiniLM vectors of the catalog, in vocabulary order.
    `start`: fine-tune this model (its config and item text are kept; items it learned stay learned)
    instead of a new one. `budget_s` (0: none): no epoch but the first starts after that many seconds. `on_best(model,
    info)`: called after each epoch that improves validation NDCG@10, e.g. to write a checkpoint."""
    seed_everything(tc.seed)
    counts = np.bincount(np.concatenate([u.items for u in train_users]), minlength=cfg.n_items + 1)
    if start is None:
        model = MultiViewModel(cfg)
        model.item_text.copy_(torch.as_tensor(np.concatenate([np.zeros((1, cfg.text_dim), np.float32), item_text])))
        model.trained_mask.copy_(torch.as_tensor(counts > 0))
    else:
        model = start
        model.trained_mask |= torch.as_tensor(counts > 0, device=model.trained_mask.device)
    model.to(device)
    started = time.monotonic()
    windows = build_windows(train_users, model.layout, cfg.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    V, rows = model.layout.n, cfg.n_items + 1
    trained = torch.nonzero(model.trained_mask).squeeze(-1)
    history: list[dict] = []
    best = {"ndcg@10": -1.0, "epoch": -1, "state": None}
    bar = tqdm(range(tc.epochs), desc="train", disable=not progress, unit="epoch")
    for epoch in bar:
        if epoch and budget_s and time.monotonic() - started > budget_s:  # the first epoch always runs
            break
        model.train()
        order = np.random.permutation(len(windows))
        total, steps = 0.0, 0
        for s in range(0, len(order), tc.batch_size):
            b = _batch(windows, order[s : s + tc.batch_size], V, rows, device)
            table = model.item_table()
            short = model.encode(table, b["items"], b["actions"], b["scens"], b["gaps"])
            carry_mean = torch.sparse.mm(b["carry"], table).view(-1, V, cfg.dim)
            views, present = model.window_views(
                b["items"], b["log_w"], b["ts"], table, carry_mean, b["carry_log_w"], b["carry_ts"]
            )
            fused, _ = model.fuse(short, views, present, b["target_scens"])
            m = b["loss_mask"]
            tgt = b["targets"][m]
            loss = _ce(short[m], table, tgt, tc.sampled_negatives) + _ce(fused[m], table, tgt, tc.sampled_negatives)
            text_loss = F.mse_loss(model.text_proj(model.item_text[trained]), model.item_emb.weight[trained].detach())
            loss = loss + tc.text_loss_weight * text_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        metrics = evaluate(InterestEncoder(model, device), valid_users, train_users)
        model.train()
        row = {"epoch": epoch, "loss": total / max(steps, 1), "valid_ndcg@10": metrics["model"]["ndcg@10"]}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", ndcg=f"{row['valid_ndcg@10']:.4f}")
        if row["valid_ndcg@10"] > best["ndcg@10"]:
            best = {"ndcg@10": row["valid_ndcg@10"], "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            if on_best is not None:
                on_best(model.eval(), {"best_epoch": epoch, "best_valid_ndcg@10": row["valid_ndcg@10"]})
        elif epoch - best["epoch"] >= tc.patience:
            break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model, {"history": history, "best_epoch": best["epoch"], "best_valid_ndcg@10": best["ndcg@10"],
                   "windows": len(windows)}
