"""Topic names and partition counts: the stream's public contract with producers and consumers."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from streams.settings import Settings

ITEMS = "iu.items"
RECOMMENDATIONS = "iu.recommendations"
DEAD_LETTERS = "iu.events.dlq"
DRIFT = "iu.drift"  # one JSON record per drift detection, keyed by detector
MODELS = "iu.models"  # the model control topic: which version is live, which in shadow, what each worker serves
COMPACTED = (ITEMS, MODELS)  # the latest record per key is what counts; read from the beginning at start
TABLE = "user_state"  # the Faust table of user states; its changelog is TABLE's, named by Faust


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
        MODELS: 1,
    }


def internal_topics(settings: Settings) -> dict[str, int]:
    """Faust's own topics, created up front with the rest: with their replication factor (Faust's
    would be 1) and, on Tansu, their partition counts (it would auto-create them with 4)."""
    return {changelog_topic(settings): settings.partitions, f"{settings.app_id}-__assignor-__leader": 1}


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-{TABLE}-changelog"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in Java and in librdkafka's
    `murmur2_random`) gives `key`: where producers must put a user's events, and where Faust
    writes the user's state changelog."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
