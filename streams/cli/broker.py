"""`iu broker start|status|stop`: the local embedded Tansu broker that `iu` commands share."""

from __future__ import annotations

import argparse
import time

from streams.errors import BrokerError
from streams.kafka.admin import create_topics
from streams.kafka.broker import MEMORY_ONLY, Recorded, local_broker
from streams.kafka.topics import all_topics
from streams.settings import Settings

NOT_RUNNING = 3  # `iu broker status`'s exit code when none runs, as `systemctl status` has it


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    p = sub.add_parser(
        "broker",
        help="start, inspect or stop the local embedded broker (Tansu) that `iu` commands share",
        description=f"The embedded broker runs detached on 127.0.0.1:IU_BROKER_PORT ({settings.broker_port}), "
        f"recorded in IU_BROKER_DIR ({settings.broker_dir}); `iu worker` starts it when none runs and "
        "IU_KAFKA_BOOTSTRAP is unset, and every `iu` command without IU_KAFKA_BOOTSTRAP uses it. It is "
        f"{MEMORY_ONLY}.",
        formatter_class=fmt,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", formatter_class=fmt, help="start it unless it runs; create every topic",
                               description="Start the embedded broker (or find it running), create the event, "
                               "catalog, recommendation and dead-letter topics with IU_PARTITIONS partitions, and "
                               "print the settings a worker elsewhere needs (IU_KAFKA_BOOTSTRAP, IU_BROKER_PROFILE).")
    start.add_argument("--partitions", type=int, default=settings.partitions, help="partitions per event topic")
    start.set_defaults(func=_start)
    status = actions.add_parser("status", formatter_class=fmt, help="whether it runs, where, and for whom",
                                description="One line: address, process, cluster id, uptime and client "
                                f"connections; exit code 0 when it runs, {NOT_RUNNING} when not.")
    status.set_defaults(func=_status)
    stop = actions.add_parser("stop", formatter_class=fmt, help="stop it (every topic is lost)",
                              description="Stop the embedded broker; refused while workers or producers are "
                              "connected to it.")
    stop.add_argument("--force", action="store_true", help="stop it even with clients connected")
    stop.set_defaults(func=_stop)


def announce(found: Recorded, started: bool) -> None:
    """What a user of the embedded broker needs to know, printed by every command that starts or finds it."""
    print(f"embedded Tansu broker {'started' if started else 'running'} at {found.bootstrap} (pid {found.pid}); "
          f"{MEMORY_ONLY}", flush=True)
    # The profile matters: a worker pointed at this broker needs the Tansu workarounds.
    print(f"IU_KAFKA_BOOTSTRAP={found.bootstrap} IU_BROKER_PROFILE=tansu", flush=True)


def _start(args: argparse.Namespace, settings: Settings) -> int:
    found, started = local_broker(settings).ensure()
    create_topics(found.bootstrap, all_topics(settings.scenarios, args.partitions))
    announce(found, started)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    broker = local_broker(settings)
    clients = broker.clients()  # before this command's own connection
    found = broker.current()
    if found is None:
        print(f"embedded broker: not running (none recorded in {settings.broker_dir})")
        return NOT_RUNNING
    print(f"embedded broker: running at {found.bootstrap} (pid {found.pid}, cluster {found.cluster_id}, "
          f"up {time.time() - found.started_at:.0f} s, {clients} client connection(s))")
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    stopped = local_broker(settings).stop(force=args.force)
    if stopped is None:
        raise BrokerError(f"no embedded broker runs (none recorded in {settings.broker_dir})")
    print(f"embedded broker at {stopped.bootstrap} (pid {stopped.pid}) stopped")
    return 0
