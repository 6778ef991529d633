"""`python -m ops.kafka`: resolve Apache Kafka's jars, or run a KRaft cluster on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ops.kafka.cluster import CACHE, KafkaCluster, fetch, kafka_version
from streams.errors import BrokerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.kafka", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    f = sub.add_parser("fetch", help=f"resolve Kafka {kafka_version()}'s jars from Maven Central into CACHE/lib",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("--cache", type=Path, default=CACHE, help="Maven's local repository and the jar folder go here")
    r = sub.add_parser("run", help="format and start a cluster, print its bootstrap, run until Ctrl-C",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--nodes", type=int, default=1, choices=(1, 3),
                   help="combined broker+controller nodes: 1, or 3 (replication factor 3, min.insync.replicas 2)")
    r.add_argument("--dir", type=Path, default=argparse.SUPPRESS,
                   help="the cluster's data and logs; run again on the same folder to keep its topics "
                   "(default: CACHE/cluster-NODES)")
    r.add_argument("--cache", type=Path, default=CACHE, help="where `fetch` put the jars")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.command == "fetch":
            print(fetch(args.cache, quiet=False))
            return 0
        root = getattr(args, "dir", None) or args.cache / f"cluster-{args.nodes}"
        cluster = KafkaCluster(root, args.nodes, args.cache)
        with cluster:
            print(f"Apache Kafka {kafka_version()}, {args.nodes} node(s), data in {cluster.root}:\n"
                  f"  IU_KAFKA_BOOTSTRAP={cluster.bootstrap} IU_BROKER_PROFILE=kafka\nCtrl-C stops it.", flush=True)
            while all(n.running for n in cluster.nodes.values()):
                time.sleep(1)
            print("a Kafka node exited; stopping the others", file=sys.stderr)
            return 1
    except BrokerError as e:
        print(f"ops.kafka: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
