"""Errors a command reports in one line, without a traceback: what failed and what to do about it.

Light on purpose (no third-party imports): the CLI catches these before it knows which command runs."""

from __future__ import annotations


class CommandError(RuntimeError):
    """Something outside the code is not as it must be (a broker, a store, a worker, a port)."""


class BrokerError(CommandError):
    """The Kafka broker cannot be reached, started or used as configured."""


class VectorStoreError(CommandError):
    """Milvus (the server or milvus-lite) refused or failed a call."""


class WorkerError(CommandError):
    """A worker cannot start, or does not answer as it must."""
