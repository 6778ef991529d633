"""Offline evaluation: chronological leave-one-out, full ranking over all items.

The model, its transformer view alone, and a popularity baseline are scored in the same
run on the same users, so their numbers compare directly. History items are excluded from
the ranking by default (`exclude_history=False` gives RecBole's protocol for sequential
models, which masks only padding).
"""

from __future__ import annotations

import numpy as np

from models.data.dataset import UserSeq
from models.inference import InterestEncoder
from models.metrics import ranking_metrics, target_ranks


def popularity(train: list[UserSeq], n_items: int) -> np.ndarray:
    items = np.concatenate([u.items for u in train]) if train else np.zeros(0, np.int64)
    return np.bincount(items, minlength=n_items + 1).astype(np.float32)


def evaluate(
    enc: InterestEncoder,
    eval_users: list[UserSeq],
    train: list[UserSeq],
    *,
    exclude_history: bool = True,
    k: int = 10,
    batch_size: int = 512,
) -> dict:
    scenarios = enc.cfg.scenarios
    pop = popularity(train, enc.cfg.n_items)
    table = enc.table
    ranks: dict[str, list[np.ndarray]] = {"model": [], "transformer_view": [], "popularity": []}
    weights, target_scens = [], []
    for start in range(0, len(eval_users), batch_size):
        chunk = eval_users[start : start + batch_size]
        hist = [u.head(len(u) - 1) for u in chunk]
        targets = np.array([u.items[-1] for u in chunk])
        scens = np.array([u.scenarios[-1] for u in chunk])
        vecs = enc.user_vectors(hist, scens)
        mask = np.zeros((len(chunk), table.shape[0]), bool)
        mask[:, 0] = True
        if exclude_history:
            for b, h in enumerate(hist):
                mask[b, h.items] = True
        for name, scores in (
            ("model", vecs["fused"] @ table.T),
            ("transformer_view", vecs["short"] @ table.T),
            ("popularity", np.broadcast_to(pop, mask.shape).copy()),
        ):
            scores[mask] = -np.inf
            ranks[name].append(target_ranks(scores, targets))
        weights.append(vecs["weights"])
        target_scens.append(scens)
    r = {name: np.concatenate(v) for name, v in ranks.items()}
    w = np.concatenate(weights)
    ts = np.concatenate(target_scens)
    out: dict = {name: ranking_metrics(v, k) for name, v in r.items()}
    out["users"] = len(eval_users)
    out["per_scenario"] = {}
    out["fusion_weights"] = {}
    for s_idx, s in enumerate(scenarios, start=1):
        sel = ts == s_idx
        if not sel.any():
            continue
        out["per_scenario"][s] = {
            "users": int(sel.sum()),
            **{name: ranking_metrics(v[sel], k)[f"ndcg@{k}"] for name, v in r.items()},
        }
        out["fusion_weights"][s] = dict(zip(enc.view_names, np.round(w[sel].mean(0), 4).tolist(), strict=True))
    return out
