"""`iu model deploy|promote|rollback|status`: change the model running workers serve, without restarting
them, and run a challenger in shadow before it serves."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streams.errors import CommandError
from streams.kafka.broker import configured_bootstrap
from streams.kafka.control import LIVE, SHADOW, WORKER, Deployment, announce, announce_live, control_records
from streams.settings import Settings

ALIVE_S = 45.0  # a worker reports at least every REPORT_S (streams/worker/control.py); older reports are stale


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    m = sub.add_parser("model", help="deploy, shadow, promote, roll back and inspect the model the workers serve",
                       description="Model versions on the compacted control topic iu.models: every worker "
                       "follows the live version (it loads it, fills its Milvus collections and switches between "
                       "two micro-batches) and scores the shadow version beside it. Model folders must be readable "
                       "at the same path by every worker.",
                       formatter_class=fmt)
    ms = m.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    d = ms.add_parser("deploy", help="make a trained model folder the live version, or the shadow one",
                      description="Announce the model in DIR (its version is read from DIR/meta.json) as the live "
                      "version; the version live before becomes the one `iu model rollback` returns to. With "
                      "--shadow, as the challenger instead: every worker ranks with it beside the live model and "
                      "the online evaluation scores both on the same events (`iu model status`, /stats).",
                      formatter_class=fmt)
    d.add_argument("dir", type=Path, help="a checkpoint folder written by `iu train`")
    d.add_argument("--shadow", action="store_true", help="run it as the challenger, not live")
    p = ms.add_parser("promote", help="make the shadow version live", formatter_class=fmt,
                      description="Announce the shadow version as the live version and end the shadow run. Within "
                      "IU_ROLLBACK_WINDOW_S after it, workers roll back by themselves if the hit rate drifts down.")
    r = ms.add_parser("rollback", help="make the previous live version live again",
                      description="Announce the live version's predecessor as the live version.", formatter_class=fmt)
    for parser, func in ((d, _deploy), (p, _promote), (r, _rollback)):
        parser.add_argument("--wait", type=float, default=0.0,
                            help="seconds to wait until every live worker (one at least) serves it (0: do not wait)")
        parser.set_defaults(func=func)
    s = ms.add_parser("status", help="print the live, previous and shadow versions and what each worker serves",
                      description="As JSON: the versions announced, and each worker's last report: the version it "
                      "serves, a rollout under way (phase, users written of all), the shadow model's paired score, "
                      f"and the report's age. Workers that have not reported for {ALIVE_S:.0f} s are marked stale.",
                      formatter_class=fmt)
    s.set_defaults(func=_status)


def _checkpoint(folder: Path) -> Deployment | None:
    meta = folder / "meta.json"
    return Deployment(json.loads(meta.read_text())["model_version"], str(folder.resolve())) if meta.is_file() else None


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    target = _checkpoint(args.dir)
    if target is None:
        raise CommandError(f"no trained model in {args.dir}: run `iu train --out {args.dir}` first")
    if args.shadow:
        announce(configured_bootstrap(settings), SHADOW, {"version": target.version, "path": target.path})
        print(json.dumps({"shadow": target.version, "path": target.path}))
        return 0
    return _make_live(settings, target, "deploy", args.wait)


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = configured_bootstrap(settings)
    shadow = Deployment.from_json(control_records(bootstrap).get(SHADOW))
    if shadow is None:
        raise CommandError("no shadow version to promote: `iu model deploy DIR --shadow` runs one")
    return _make_live(settings, shadow, "promote", args.wait)


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    live = control_records(configured_bootstrap(settings)).get(LIVE) or {}
    previous = Deployment.from_json(live.get("previous"))
    if previous is None:
        raise CommandError("no previous live version to return to (`iu model status` shows what is live)")
    return _make_live(settings, previous, "rollback", args.wait)


def _make_live(settings: Settings, target: Deployment, reason: str, wait_s: float) -> int:
    """Announces `target` as live; before any announcement the previous one is what the workers report
    they serve, or else IU_MODEL's."""
    bootstrap = configured_bootstrap(settings)

    def serving() -> Deployment | None:
        reported = [Deployment(w["serving"], w["path"]) for w in _workers(bootstrap) if not w["stale"]]
        return reported[0] if reported else _checkpoint(settings.model_path)

    previous = announce_live(bootstrap, target, reason, serving)
    print(json.dumps({"live": target.version, "path": target.path, "previous": previous.version if previous else None}))
    return _wait(bootstrap, target, wait_s)


def _wait(bootstrap: str, target: Deployment, wait_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while wait_s:
        live_workers = [w for w in _workers(bootstrap) if not w["stale"]]
        behind = [w["url"] for w in live_workers if w["serving"] != target.version]
        if live_workers and not behind:
            break
        if time.monotonic() > deadline:
            raise CommandError(f"within {wait_s:.0f} s these workers did not switch to {target.version}: {behind}")
        time.sleep(1.0)
    return 0


def _workers(bootstrap: str) -> list[dict]:
    now = time.time()
    return [{**record, "age_s": round(now - record["at"], 1), "stale": now - record["at"] > ALIVE_S}
            for key, record in sorted(control_records(bootstrap).items()) if key.startswith(WORKER)]


def _status(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = configured_bootstrap(settings)
    records = control_records(bootstrap)
    live, shadow = records.get(LIVE) or {}, records.get(SHADOW) or {}
    print(json.dumps({"live": live.get("version"), "path": live.get("path"), "reason": live.get("reason"),
                      "previous": (live.get("previous") or {}).get("version"), "shadow": shadow.get("version"),
                      "workers": _workers(bootstrap)}, indent=2))
    return 0
