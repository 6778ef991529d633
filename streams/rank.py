"""From ANN candidates to the list a user sees: drop what they just interacted with, then diversify.

MMR (maximal marginal relevance) picks, one at a time, the candidate with the best
(1 - diversity) * relevance - diversity * (max cosine similarity to the items already picked),
so a user who just clicked five thrillers does not get ten more of the same.
"""

from __future__ import annotations

import numpy as np


def rerank(
    candidates: list[tuple[str, float]],
    seen: set[str],
    vectors: dict[str, np.ndarray],
    k: int,
    diversity: float,
) -> list[tuple[str, float]]:
    """`candidates` (item_id, score) best first; returns at most k (item_id, score) in MMR order."""
    pool = [(i, s) for i, s in candidates if i not in seen]
    if diversity <= 0 or len(pool) <= 1:
        return pool[:k]
    ids = [i for i, _ in pool]
    rel = np.array([s for _, s in pool], np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    vecs = np.stack([vectors[i] for i in ids]).astype(np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sim = vecs @ vecs.T
    picked: list[int] = []
    max_sim = np.full(len(ids), -np.inf)
    free = np.ones(len(ids), bool)
    for _ in range(min(k, len(ids))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = np.where(free, (1 - diversity) * rel - diversity * penalty, -np.inf)
        best = int(score.argmax())
        picked.append(best)
        free[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return [pool[i] for i in picked]
