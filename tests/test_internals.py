"""The private names of Faust, aiokafka and mode that the worker overrides or calls
(streams/kafka/faust_compat.py), at the versions pyproject.toml pins. An upgrade that
renames one, changes its parameters or stops reading it fails here, naming it, instead of showing
up later as an event lost or applied twice."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

import aiokafka
import faust.transport.consumer
import mode
import pytest
from faust.streams import Stream
from faust.transport.drivers import aiokafka as driver

# (owner, name, parameter names): overridden (o) or called (c) by our code
SIGNATURES = [
    (driver.AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"]),  # o, faust_compat.py
    (driver.AIOKafkaConsumerThread, "_ensure_consumer", ["self"]),  # c, faust_compat.py
    (driver.AIOKafkaConsumerThread, "seek_to_committed", ["self"]),  # o, faust_compat.py
    (driver.AIOKafkaConsumerThread, "highwaters", ["self", "partitions"]),  # o, faust_compat.py
    (driver.AIOKafkaConsumerThread, "call_thread", ["self", "fun", "args", "kwargs"]),  # c, faust_compat.py
    (driver.Consumer, "_filter_committable_offsets", ["self", "tps"]),  # o, faust_compat.py
    (driver.Consumer, "_should_commit", ["self", "tp", "offset"]),  # c, faust_compat.py
    (driver.Consumer, "_new_consumer_thread", ["self"]),  # o, faust_compat.py
    (driver.Consumer, "wait_first", ["self", "coros", "timeout"]),  # o, faust_compat.py
    (Stream, "_set_current_event", ["self", "event"]),  # c, faust_compat.py
    (argparse.HelpFormatter, "_get_help_string", ["self", "action"]),  # o, streams/cli
]

# (function, what its source must contain): attributes we set or read, and the call shape we assume
SOURCES = [
    (aiokafka.AIOKafkaConsumer.__init__, "self._fetch_max_wait_ms"),  # set by faust_compat.py after construction
    (aiokafka.AIOKafkaConsumer.start, "self._fetch_max_wait_ms"),  # read when the consumer starts
    (mode.Service.__init__, "self._stopped"),  # read by MendedConsumer.wait_first
    (mode.Service.__init__, "self._crashed"),
    # MendedConsumer.wait_first runs this call in place; another shape would take the stock path
    (faust.transport.consumer.Consumer._drain_messages, "await self.wait_first(\n"
                                                         "                                callback(message), "
                                                         "self.suspend_flow.wait()\n"),
]


@pytest.mark.parametrize(("owner", "name", "params"), SIGNATURES,
                         ids=[f"{o.__name__}.{n}" for o, n, _ in SIGNATURES])
def test_overridden_and_called_privates_exist_with_their_parameters(owner: type, name: str, params: list[str]):
    assert hasattr(owner, name), f"{owner.__module__}.{owner.__name__}.{name} is gone"
    found = list(inspect.signature(getattr(owner, name)).parameters)
    assert found == params, f"{owner.__module__}.{owner.__name__}.{name} now takes {found}, we pass {params}"


@pytest.mark.parametrize(("function", "fragment"), SOURCES, ids=[f.__qualname__ for f, _ in SOURCES])
def test_attributes_we_set_or_read_are_still_there(function: Callable, fragment: str):
    assert fragment in inspect.getsource(function), f"{function.__module__}.{function.__qualname__} no longer " \
                                                     f"has {fragment.strip()!r}"
