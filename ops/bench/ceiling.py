"""The framework ceiling: a trivial Faust agent that forwards each message to a sink topic.

Same broker, same partitions, same Tansu workarounds, same message bytes as the worker sees:
what Faust itself costs per event on this machine, so the worker's throughput can be read as a
ratio of it. Started by `ops.bench.e2e` as

    IU_KAFKA_BOOTSTRAP=host:port [CEILING_BATCHED=1] python -m ops.bench.ceiling worker --without-web -l warn

CEILING_BATCHED=1 drops the one-record-per-produce-batch workaround (which only the table
changelog needs). Without it aiokafka keeps one single-record batch in flight per partition, so
the agent is bound by broker round trips rather than by CPU. Each variant has its own app id and
topics, so one run never sees the other's messages or offsets.
"""

from __future__ import annotations

import os

import faust

from streams.app import broker_options, tune_transport
from streams.settings import Settings


def names(batched: bool) -> tuple[str, tuple[str, ...], str]:
    """(app id, source topics, sink topic) of a variant; Faust's leader topic is f"{app id}-__assignor-__leader"."""
    variant = "batched" if batched else "configured"
    return (f"iu-bench-ceiling-{variant}", tuple(f"bench.ceiling.{variant}.{s}" for s in Settings().scenarios),
            f"bench.ceiling.{variant}.out")


def main() -> None:
    batched = os.environ.get("CEILING_BATCHED") == "1"
    app_id, sources, sink_topic = names(batched)
    settings = Settings.from_env()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    options = broker_options(settings)
    if batched:
        options.pop("producer_max_batch_size", None)
    app = faust.App(app_id, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
                    datadir=str(settings.state_dir / "ceiling"), processing_guarantee="at_least_once",
                    topic_partitions=settings.partitions, key_serializer="raw", value_serializer="raw", **options)
    tune_transport(app, settings)
    source = app.topic(*sources, key_type=bytes, value_type=bytes)
    sink = app.topic(sink_topic, key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def forward(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)

    app.main()


if __name__ == "__main__":
    main()
