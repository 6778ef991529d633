"""A seeded multi-scenario stream with planted structure: the ground truth for the multi-view model.

What is planted, so tests can check the model finds it:
- Items belong to topics; titles are made of topic words, so the text encoder sees the topics.
  Item popularity is Zipf-shaped, also within each topic.
- Each user has a shared topic mix plus one mix per scenario. How much a scenario follows its
  own mix differs by scenario (`SCENARIO_STYLE`): `search` is scenario-specific, `home`
  follows the shared long-term mix, `video` is sequential (the next item continues a chain).
  A good fusion therefore weights the search view for search, the long-term view for home
  and the transformer view for video.
- Purchases are drawn from the user's interests; clicks are half noise from popular items, so
  the purchase view carries more signal than the click view.
- Optionally, at `shift_at` (a fraction of the time span) every user's interests are redrawn
  abruptly, for the drift tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.contract import Event, Item

TOPIC_WORDS = (
    "jazz", "football", "cooking", "space", "gardening", "chess", "horror", "travel",
    "finance", "anime", "fitness", "history", "robots", "fashion", "wildlife", "poetry",
)
SCENARIO_STYLE = {"home": "shared", "search": "specific", "video": "sequential"}
T0_MS = 1_700_000_000_000  # the stream's first possible timestamp


@dataclass(frozen=True)
class SynthSpec:
    users: int = 1000
    items: int = 800
    topics: int = 16
    events_per_user: int = 60
    scenarios: tuple[str, ...] = ("home", "search", "video")
    shift_at: float | None = None  # fraction of the time span, e.g. 0.5
    seed: int = 7
    span_days: float = 30.0


def shift_ts(spec: SynthSpec) -> int | None:
    """When every user's interests are redrawn (ms), or None for a stream without a shift."""
    return None if spec.shift_at is None else T0_MS + int(spec.shift_at * spec.span_days * 86_400_000)


def _style(scenario: str) -> str:
    return SCENARIO_STYLE.get(scenario, "shared")


def generate(spec: SynthSpec) -> tuple[list[Event], list[Item]]:
    rng = np.random.default_rng(spec.seed)
    topics = min(spec.topics, len(TOPIC_WORDS))
    item_topic = rng.integers(0, topics, spec.items)
    popularity = rng.zipf(1.6, spec.items).astype(float)
    popularity /= popularity.sum()
    by_topic = [np.flatnonzero(item_topic == t) for t in range(topics)]
    # Within a topic, items are chosen by their popularity: the topic tells what, popularity which.
    in_topic = [popularity[ix] / popularity[ix].sum() if len(ix) else ix for ix in by_topic]
    items = [
        Item(f"s{i}", f"{TOPIC_WORDS[item_topic[i]]} {rng.choice(['guide', 'show', 'story', 'review'])} {i}",
             (TOPIC_WORDS[item_topic[i]],))
        for i in range(spec.items)
    ]

    def draw_mixes() -> tuple[np.ndarray, np.ndarray]:
        shared = rng.dirichlet(np.full(topics, 0.15))
        per_scen = rng.dirichlet(np.full(topics, 0.15), size=len(spec.scenarios))
        return shared, per_scen

    span_ms = int(spec.span_days * 86_400_000)
    shift = shift_ts(spec)
    raw: list[tuple[int, str, int, str, str]] = []
    for u in range(spec.users):
        shared, per_scen = draw_mixes()
        n = max(3, int(rng.poisson(spec.events_per_user)))
        times = np.sort(rng.integers(0, span_ms, n))
        shifted = False
        prev_item = -1
        for t in times:
            if shift is not None and not shifted and T0_MS + t >= shift:
                shared, per_scen = draw_mixes()
                shifted = True
            s = int(rng.integers(len(spec.scenarios)))
            scen = spec.scenarios[s]
            style = _style(scen)
            action = "purchase" if rng.random() < 0.3 else "click"
            if action == "click" and rng.random() < 0.5:
                item = int(rng.choice(spec.items, p=popularity))
            elif style == "sequential" and prev_item >= 0 and rng.random() < 0.8:
                pool = by_topic[item_topic[prev_item]]
                item = int(pool[(np.searchsorted(pool, prev_item) + 1) % len(pool)])
            else:
                mix = per_scen[s] if style == "specific" else shared
                if style == "sequential":
                    mix = 0.5 * shared + 0.5 * per_scen[s]
                topic = int(rng.choice(topics, p=mix))
                pool = by_topic[topic]
                item = int(rng.choice(pool, p=in_topic[topic])) if len(pool) else int(rng.integers(spec.items))
            prev_item = item
            raw.append((int(T0_MS + t), f"u{u}", item, action, scen))
    raw.sort(key=lambda r: (r[0], r[1]))
    events = [Event(f"synth:{k}", u, f"s{i}", a, s, t) for k, (t, u, i, a, s) in enumerate(raw)]
    return events, items
