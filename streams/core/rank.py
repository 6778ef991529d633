"""From ANN candidates to the lists users see: drop what they just interacted with, then diversify.

MMR (maximal marginal relevance) picks, one at a time, the candidate with the best
(1 - diversity) * relevance - diversity * (max cosine similarity to the items already picked),
so a user who just clicked five thrillers does not get ten more of the same. A micro-batch's users
are re-ranked together, k steps over a padded [users, candidates] array: per user, each step was a
handful of numpy calls on ~90 numbers, and the calls' overhead was the cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def rerank(
    candidates: list[list[tuple[str, float]]],
    seen: list[set[str]],
    matrix: Callable[[list[str]], np.ndarray],
    k: int,
    diversity: float,
) -> list[list[tuple[str, float]]]:
    """Per user, `candidates` (item_id, score) best first and the `seen` items to drop; returns at most k
    (item_id, score) per user in MMR order. `matrix(ids)` gives the items' vectors as rows (one call)."""
    pools = [[(i, s) for i, s in c if i not in drop] for c, drop in zip(candidates, seen, strict=True)]
    width = max(map(len, pools), default=0)
    if diversity <= 0 or width <= 1:
        return [p[:k] for p in pools]
    valid = np.arange(width) < np.array([len(p) for p in pools])[:, None]
    rel = np.zeros(valid.shape)
    rel[valid] = [s for p in pools for _, s in p]
    lo = np.where(valid, rel, np.inf).min(axis=1, keepdims=True)
    span = np.where(valid, rel, -np.inf).max(axis=1, keepdims=True) - lo
    rel = np.divide(rel - lo, span, out=np.ones_like(rel), where=span > 0)  # all tied: all equally relevant
    flat = matrix([i for p in pools for i, _ in p]).astype(np.float64)
    vecs = np.zeros((*valid.shape, flat.shape[1]))
    vecs[valid] = flat / np.maximum(np.sqrt(np.einsum("nd,nd->n", flat, flat))[:, None], 1e-12)
    rows = np.arange(len(pools))
    penalty = np.zeros(valid.shape)  # max similarity to the picked items; none picked yet: 0
    free = valid.copy()
    picks = np.zeros((len(pools), min(k, width)), np.int64)
    for step in range(picks.shape[1]):
        best = np.where(free, (1 - diversity) * rel - diversity * penalty, -np.inf).argmax(axis=1)
        picks[:, step] = best
        free[rows, best] = False
        sim = np.einsum("bcd,bd->bc", vecs, vecs[rows, best])  # the pick's similarity to every candidate
        penalty = sim if step == 0 else np.maximum(penalty, sim)
    return [[p[n] for n in picks[b, :min(k, len(p))]] for b, p in enumerate(pools)]
