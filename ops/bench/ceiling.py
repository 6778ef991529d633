"""The framework ceiling: a trivial Faust agent that forwards each message to a sink topic.

Same broker, same partitions, same Tansu workarounds, same message bytes as the worker sees:
what Faust itself costs per event on this machine, so the worker's throughput can be read as a
ratio of it. Started by `ops.bench.e2e` as

    IU_KAFKA_BOOTSTRAP=host:port python -m ops.bench.ceiling worker --without-web -l warn
"""

from __future__ import annotations

import faust

from streams.kafka.profiles import broker_options, tune_transport
from streams.settings import Settings

APP_ID = "iu-bench-ceiling"  # Faust's leader topic is f"{APP_ID}-__assignor-__leader"
SOURCES = tuple(f"bench.ceiling.{s}" for s in Settings().scenarios)
SINK = "bench.ceiling.out"


def main() -> None:
    settings = Settings.from_env()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(APP_ID, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
                    datadir=str(settings.state_dir / "ceiling"), processing_guarantee="at_least_once",
                    topic_partitions=settings.partitions, key_serializer="raw", value_serializer="raw",
                    **broker_options(settings))
    tune_transport(app, settings)
    source = app.topic(*SOURCES, key_type=bytes, value_type=bytes)
    sink = app.topic(SINK, key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def forward(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)

    app.main()


if __name__ == "__main__":
    main()
