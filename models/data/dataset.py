"""Events as per-user chronological sequences of indices, and the leave-one-out split.

Index 0 is padding in every vocabulary, so the model's embedding tables can reserve it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.contract import ACTIONS, Event, Item, read_events, read_items


@dataclass
class UserSeq:
    user_id: str
    items: np.ndarray  # int64 item indices (1-based)
    actions: np.ndarray  # int64 action indices (1-based)
    scenarios: np.ndarray  # int64 scenario indices (1-based)
    ts: np.ndarray  # int64 epoch ms

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int) -> UserSeq:
        return UserSeq(self.user_id, self.items[:n], self.actions[:n], self.scenarios[:n], self.ts[:n])


@dataclass
class SequenceData:
    item_ids: list[str]  # index i+1 -> item id
    scenarios: tuple[str, ...]
    users: list[UserSeq]
    items: list[Item] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def build(
    events: list[Event],
    items: list[Item],
    scenarios: tuple[str, ...] = (),
    item_ids: list[str] | None = None,
) -> SequenceData:
    """Group events by user keeping their order (already (ts, line)-sorted in the files).

    `item_ids` pins the item vocabulary (a trained model's); otherwise the catalog order is used.
    Scenarios not listed in `scenarios` are appended in sorted order.
    """
    catalog = {it.item_id: it for it in items}
    ids = item_ids or list(catalog) + sorted({e.item_id for e in events} - catalog.keys())
    item_index = {iid: k + 1 for k, iid in enumerate(ids)}
    unknown = {e.item_id for e in events} - item_index.keys()
    if unknown:
        raise ValueError(f"{len(unknown)} items not in the model's vocabulary, e.g. {sorted(unknown)[:3]}")
    scens = tuple(scenarios) + tuple(sorted({e.scenario for e in events} - set(scenarios)))
    scen_index = {s: k + 1 for k, s in enumerate(scens)}
    act_index = {a: k + 1 for k, a in enumerate(ACTIONS)}
    per_user: dict[str, list[Event]] = {}
    for e in events:
        per_user.setdefault(e.user_id, []).append(e)
    users = []
    for uid, evs in per_user.items():
        evs.sort(key=lambda e: e.ts)  # stable: ties keep file order
        users.append(
            UserSeq(
                uid,
                np.array([item_index[e.item_id] for e in evs], dtype=np.int64),
                np.array([act_index[e.action] for e in evs], dtype=np.int64),
                np.array([scen_index[e.scenario] for e in evs], dtype=np.int64),
                np.array([e.ts for e in evs], dtype=np.int64),
            )
        )
    return SequenceData(ids, scens, users, [catalog.get(i, Item(i, i, ())) for i in ids])


def load(folder: Path, scenarios: tuple[str, ...] = (), item_ids: list[str] | None = None) -> SequenceData:
    return build(read_events(folder / "events.csv"), read_items(folder / "items.csv"), scenarios, item_ids)


def leave_one_out(data: SequenceData, min_len: int = 3) -> tuple[list[UserSeq], list[UserSeq], list[UserSeq]]:
    """Chronological leave-one-out: train on all but the last two, validate on the second to
    last, test on the last; each eval sequence is the full history ending at its target."""
    train, valid, test = [], [], []
    for u in data.users:
        if len(u) < min_len:
            continue
        train.append(u.head(len(u) - 2))
        valid.append(u.head(len(u) - 1))
        test.append(u)
    return train, valid, test
