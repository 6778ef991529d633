"""`iu config`: the configuration in force, so a user sees what the environment actually set."""

from __future__ import annotations

import argparse

from streams.settings import Settings, reference_table


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    c = sub.add_parser(
        "config",
        help="print every IU_* setting: its value now, its default and what it does",
        description="Prints the configuration reference as a Markdown table. Values come from IU_* "
        "environment variables (unset ones keep their defaults); a bad value stops every iu command "
        "with one line naming the variable.",
        formatter_class=fmt,
    )
    c.add_argument("--defaults", action="store_true",
                   help="only defaults and meanings: the table README.md embeds")
    c.set_defaults(func=_config)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(reference_table(None if args.defaults else settings))
    return 0
