"""`iu model deploy|rollback|status`: change the model running workers serve, without restarting them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streams.errors import CommandError
from streams.kafka.broker import configured_bootstrap
from streams.kafka.control import LIVE, WORKER, Deployment, announce, control_records, live_record
from streams.settings import Settings

ALIVE_S = 45.0  # a worker reports at least every REPORT_S (streams/worker/rollout.py); older reports are stale


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    m = sub.add_parser("model", help="deploy, roll back and inspect the model the workers serve",
                       description="Model versions on the compacted control topic iu.models: every worker "
                       "follows the live version (it loads it, fills its Milvus collections and switches between "
                       "two micro-batches). Model folders must be readable at the same path by every worker.",
                       formatter_class=fmt)
    ms = m.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    d = ms.add_parser("deploy", help="make a trained model folder the live version",
                      description="Announce the model in DIR (its version is read from DIR/meta.json) as the live "
                      "version; the version live before becomes the one `iu model rollback` returns to.",
                      formatter_class=fmt)
    d.add_argument("dir", type=Path, help="a checkpoint folder written by `iu train`")
    r = ms.add_parser("rollback", help="make the previous live version live again",
                      description="Announce the live version's predecessor as the live version.", formatter_class=fmt)
    for p in (d, r):
        p.add_argument("--wait", type=float, default=0.0,
                       help="seconds to wait until every live worker (one at least) serves it (0: do not wait)")
        p.set_defaults(func=_deploy if p is d else _rollback)
    s = ms.add_parser("status", help="print the live version and what each worker serves, as JSON",
                      description="The live and previous versions announced, and each worker's last report: the "
                      "version it serves, a rollout under way (phase, users written of all), and the report's age. "
                      f"Workers that have not reported for {ALIVE_S:.0f} s are listed as stale.", formatter_class=fmt)
    s.set_defaults(func=_status)


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    target = _checkpoint(args.dir)
    if target is None:
        raise CommandError(f"no trained model in {args.dir}: run `iu train --out {args.dir}` first")
    return _make_live(settings, target, args.wait)


def _checkpoint(folder: Path) -> Deployment | None:
    meta = folder / "meta.json"
    return Deployment(json.loads(meta.read_text())["model_version"], str(folder.resolve())) if meta.is_file() else None


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    live = control_records(configured_bootstrap(settings)).get(LIVE) or {}
    previous = Deployment.from_json(live.get("previous"))
    if previous is None:
        raise CommandError("no previous live version to return to (`iu model status` shows what is live)")
    return _make_live(settings, previous, args.wait)


def _make_live(settings: Settings, target: Deployment, wait_s: float) -> int:
    """Announces `target` as live; the previous one is the live version announced, or before any
    announcement the version the workers report they serve, or else IU_MODEL's."""
    bootstrap = configured_bootstrap(settings)
    live = Deployment.from_json(control_records(bootstrap).get(LIVE))
    if live is None:
        reported = [Deployment(w["serving"], w["path"]) for w in _workers(bootstrap) if not w["stale"]]
        live = reported[0] if reported else _checkpoint(settings.model_path)
    if live != target:
        announce(bootstrap, LIVE, live_record(target, live))
    print(json.dumps({"live": target.version, "path": target.path, "previous": live.version if live else None}))
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
    live = control_records(bootstrap).get(LIVE) or {}
    print(json.dumps({"live": live.get("version"), "path": live.get("path"),
                      "previous": (live.get("previous") or {}).get("version"), "workers": _workers(bootstrap)},
                     indent=2))
    return 0
