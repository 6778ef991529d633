"""Top-K ranking metrics over the full item set.

Ties are broken by item index (lower index ranks first), as a `topk` over a score vector
does, so a constant-score baseline is not credited with an optimistic rank.
"""

from __future__ import annotations

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target. scores (B, N) with -inf on excluded items."""
    b = np.arange(len(targets))
    t = scores[b, targets][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    return ((scores > t) | ((scores == t) & (idx < targets[:, None]))).sum(1)


def ranking_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    ranks = np.asarray(ranks)
    hit = ranks < k
    n = max(len(ranks), 1)
    return {
        f"hr@{k}": float(hit.sum() / n),
        f"ndcg@{k}": float((hit / np.log2(ranks + 2)).sum() / n),
        f"mrr@{k}": float((hit / (ranks + 1)).sum() / n),
    }
