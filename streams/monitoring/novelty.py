"""Category novelty: does an event's item belong to a category the user has not touched lately?

Why a catalog signal beside the fused-vector distance: the vector distance only sees an interest
shift as far as the model's item vectors separate the interests, and a model trained for minutes on
a CPU barely does (measured in ops/bench/RESULTS.md). The catalog's categories (genres, topics) are
the shop's own taxonomy: when users as a whole start consuming categories new to them, their
interests moved, whatever the model learned. Ops read it directly: "users left their usual genres".

Memory per user is the categories seen in their last `window` events (a few entries), in an LRU.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.monitoring.quality import LRU

WINDOW = 20  # a category seen within the user's last WINDOW events is familiar
MIN_HISTORY = 5  # fewer events than this: everything is new, so no signal yet


class CategoryNovelty:
    def __init__(self, capacity: int, window: int = WINDOW, min_history: int = MIN_HISTORY) -> None:
        self.window, self.min_history = window, min_history
        # user -> (events seen, category -> number of the event that last had it)
        self.users: LRU[str, tuple[int, dict[str, int]]] = LRU(capacity)

    def observe(self, user_id: str, categories: Sequence[str]) -> float | None:
        """1.0 if none of `categories` is among the user's recent ones, 0.0 if one is, None while
        the user's history is too short (or the item has no categories) to say."""
        if not categories:
            return None
        seen, last = self.users.get(user_id) or (0, {})
        now = seen + 1
        recent = {c: k for c, k in last.items() if k > now - 1 - self.window}
        novel = None if seen < self.min_history else float(recent.keys().isdisjoint(categories))
        recent.update(dict.fromkeys(categories, now))
        self.users.put(user_id, (now, recent))
        return novel
