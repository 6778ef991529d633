"""`iu`: one entry point, one subcommand per job. Each subcommand's module registers itself.

The modules import torch, Faust and pymilvus inside the commands that use them, so `iu --help`,
`iu config`, `iu broker` and `iu publish` start in well under a second."""

from __future__ import annotations

import argparse
import signal
import sys

from streams.cli import broker, config, data, demo, lifecycle, model, produce, recs, worker
from streams.errors import CommandError
from streams.settings import Settings, SettingsError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help, except where "None" would say nothing: a required option,
    or one whose help already says what its absence means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iu",
        description="interest-updater: real-time multi-view user interests for recommender systems.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, model, lifecycle, broker, worker, produce, recs, demo, config):
        module.register(sub, settings, HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"iu: bad configuration: {e}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    # A stop request (`timeout`, `kill`, a CI runner ending the job) is taken as a Ctrl-C, so what a
    # command started (the demo's worker and broker, a producer's unflushed batch) is stopped on the way
    # out; by default SIGTERM ends the process at once and leaves its children running, unowned.
    # `iu worker` and `iu broker` install their own handlers for both signals over this one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return int(args.func(args, settings) or 0)
    except (FileNotFoundError, CommandError) as e:
        print(f"iu: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what it started is stopped by then: the context managers unwound
        print("iu: interrupted", file=sys.stderr)
        return 130
