"""`iu recs tail` and `iu recs get`: read recommendations from the topic or ask the worker."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import urllib.error
import urllib.parse
import urllib.request

from streams.errors import WorkerError
from streams.kafka.broker import configured_bootstrap
from streams.kafka.reader import read
from streams.kafka.topics import RECOMMENDATIONS
from streams.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    r = sub.add_parser("recs", help="read recommendations", description="Read recommendations.",
                       formatter_class=fmt)
    rs = r.add_subparsers(dest="recs_command", required=True, metavar="COMMAND")
    t = rs.add_parser(
        "tail",
        help="print recommendations from the iu.recommendations topic as JSON lines",
        description="Consume iu.recommendations (plain confluent-kafka, its own consumer group) and print "
        "each message. Needs IU_KAFKA_BOOTSTRAP.",
        formatter_class=fmt,
    )
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest message, not the newest")
    t.add_argument("--limit", type=int, default=0, help="stop after N messages (0: never)")
    t.add_argument("--timeout", type=float, default=0.0, help="stop after this many idle seconds (0: never)")
    t.set_defaults(func=_tail)
    g = rs.add_parser(
        "get",
        help="ask the worker for a user's current recommendations (HTTP)",
        description=f"GET http://IU_WEB_HOST:IU_WEB_PORT/users/USER/recommendations "
        f"(now {settings.web_host}:{settings.web_port}).",
        formatter_class=fmt,
    )
    g.add_argument("user", help="user id")
    g.add_argument("--scenario", default=None, help="target scenario (default: that of the user's latest event)")
    g.set_defaults(func=_get)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    values = read(configured_bootstrap(settings), RECOMMENDATIONS, args.from_beginning, args.timeout)
    with contextlib.closing(values):
        try:
            for value in itertools.islice(values, args.limit or None):
                print(value.decode(), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def _get(args: argparse.Namespace, settings: Settings) -> int:
    query = f"?scenario={urllib.parse.quote(args.scenario)}" if args.scenario else ""
    url = f"http://{settings.web_host}:{settings.web_port}/users/{urllib.parse.quote(args.user)}/recommendations{query}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            print(resp.read().decode())
    except urllib.error.HTTPError as e:
        print(e.read().decode())
        return 1
    except OSError as e:
        raise WorkerError(f"no worker answers at {url} ({e}): start `iu worker`, or set IU_WEB_PORT") from None
    return 0
