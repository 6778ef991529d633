"""Topic names and partition counts: the stream's public contract with producers and consumers."""

from __future__ import annotations

ITEMS = "iu.items"
RECOMMENDATIONS = "iu.recommendations"
DEAD_LETTERS = "iu.events.dlq"
DRIFT = "iu.drift"  # one JSON record per drift detection, keyed by detector


def events_topic(scenario: str) -> str:
    return f"iu.events.{scenario}"


def all_topics(scenarios: tuple[str, ...], partitions: int) -> dict[str, int]:
    """Every topic the product uses, with its partition count.

    Event topics share one count so that a user's events from every scenario land on the same
    partition number, and so on the same worker.
    """
    return {
        **{events_topic(s): partitions for s in scenarios},
        ITEMS: 1,
        RECOMMENDATIONS: partitions,
        DEAD_LETTERS: 1,
        DRIFT: 1,
    }
