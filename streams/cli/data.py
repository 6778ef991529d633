"""`iu data`: obtain and convert data sets into the event contract."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.data import movielens, synth
from streams.cli.datasets import write_synth
from streams.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    p = sub.add_parser("data", help="fetch or generate data sets", description=__doc__, formatter_class=fmt)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    f = dsub.add_parser(
        "fetch",
        help="fetch MovieLens and convert it to events.csv + items.csv",
        description="Fetch MovieLens-100K from the RecBole 1.2.1 wheel on the package index, or convert "
        "GroupLens files you already have (--from), into the event contract under IU_DATA_DIR/NAME.",
        formatter_class=fmt,
    )
    f.add_argument("name", choices=["ml-100k"], help="data set to fetch")
    f.add_argument("--from", dest="from_path", type=Path, default=None,
                   help="folder with GroupLens files (u.data/u.item or ratings.dat/movies.dat) instead of downloading")
    f.add_argument("--out", type=Path, default=None, help="output folder (default: IU_DATA_DIR/NAME)")
    f.set_defaults(func=_fetch)

    s = dsub.add_parser(
        "synth",
        help="generate a seeded multi-scenario stream with planted structure",
        description=synth.__doc__,
        formatter_class=fmt,
    )
    d = synth.SynthSpec()
    s.add_argument("--users", type=int, default=d.users, help="number of users")
    s.add_argument("--items", type=int, default=d.items, help="number of items")
    s.add_argument("--events-per-user", type=int, default=d.events_per_user, help="mean events per user (Poisson)")
    s.add_argument("--shift-at", type=float, default=None,
                   help="fraction of the time span (0..1) at which every user's interests shift abruptly")
    s.add_argument("--seed", type=int, default=settings.seed, help="random seed")
    s.add_argument("--out", type=Path, default=settings.data_dir / "synth", help="output folder")
    s.set_defaults(func=_synth)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    out = args.out or settings.data_dir / args.name
    events, items = movielens.prepare(out, args.from_path)
    print(f"{events}\n{items}")
    return 0


def _synth(args: argparse.Namespace, settings: Settings) -> int:
    spec = synth.SynthSpec(users=args.users, items=args.items, events_per_user=args.events_per_user,
                           scenarios=settings.scenarios, shift_at=args.shift_at, seed=args.seed)
    out = write_synth(args.out, spec)
    print(f"{out / 'events.csv'}\n{out / 'items.csv'}")
    return 0
