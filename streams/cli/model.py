"""`iu train` and `iu eval`: fit the multi-view model (or fine-tune one on the event log) and measure it
offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from models.config import ModelConfig, TrainConfig
from streams.cli.datasets import resolve
from streams.errors import CommandError
from streams.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from models.data.dataset import SequenceData
    from models.multiview import MultiViewModel


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    t = sub.add_parser(
        "train",
        help="train the multi-view model on a data set, or fine-tune one on the event log",
        description="Train on the leave-one-out training split (all but each user's last two events), "
        "select the epoch by validation NDCG@10, and write a checkpoint directory. With --resume, fine-tune "
        "that model instead (its architecture options are kept); with --from-topics on the events and catalog "
        "read from Kafka (IU_KAFKA_BOOTSTRAP, or the embedded broker): items published since the model was "
        "trained join its vocabulary and get learned vectors. The checkpoint is written after each epoch that "
        "improves validation NDCG@10; deploy it with `iu model deploy`.",
        formatter_class=fmt,
    )
    t.add_argument("--dataset", default="ml-100k", help="ml-100k, synth, or a folder with events.csv/items.csv")
    t.add_argument("--resume", type=Path, default=None, help="a checkpoint folder to fine-tune (default: none)")
    t.add_argument("--from-topics", action="store_true",
                   help="train on the iu.events.* topics and iu.items, not on --dataset")
    t.add_argument("--since", type=parse_duration, default=0.0,
                   help="with --from-topics: only events of this last duration (e.g. 6h, 3d, 90m; 0: all)")
    t.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds after which no new epoch starts (0: no limit)")
    t.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: IU_MODEL_DIR/DATASET)")
    m, c = ModelConfig(n_items=0, scenarios=()), TrainConfig()
    t.add_argument("--epochs", type=int, default=c.epochs, help="maximum epochs")
    t.add_argument("--patience", type=int, default=c.patience, help="stop after this many epochs without gain")
    t.add_argument("--batch-size", type=int, default=c.batch_size, help="windows per step")
    t.add_argument("--lr", type=float, default=c.lr, help="Adam learning rate")
    t.add_argument("--seed", type=int, default=settings.seed, help="random seed")
    t.add_argument("--sampled-negatives", type=int, default=c.sampled_negatives,
                   help="sampled softmax with this many shared negatives (0: full softmax)")
    t.add_argument("--dim", type=int, default=m.dim, help="embedding size")
    t.add_argument("--layers", type=int, default=m.layers, help="transformer layers")
    t.add_argument("--heads", type=int, default=m.heads, help="attention heads")
    t.add_argument("--max-len", type=int, default=m.max_len, help="transformer window (events)")
    t.add_argument("--dropout", type=float, default=m.dropout, help="hidden and attention dropout")
    t.add_argument("--item-only", action="store_true",
                   help="transformer inputs are items and positions only (plain SASRec inputs)")
    t.add_argument("--device", default=settings.device, help="auto, cpu or cuda")
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "eval",
        help="evaluate a model: HR/NDCG/MRR@10 against popularity, full ranking",
        description="Chronological leave-one-out on the last event of each user, ranking over all items. "
        "Prints one JSON line: the model, its transformer view alone and a popularity baseline.",
        formatter_class=fmt,
    )
    e.add_argument("--model", type=Path, required=True, help="checkpoint folder")
    e.add_argument("--dataset", default="ml-100k", help="ml-100k, synth, or a folder")
    e.add_argument("--split", choices=["test", "valid"], default="test", help="which held-out event to rank")
    e.add_argument("--keep-history", action="store_true",
                   help="do not exclude history items from the ranking (RecBole's sequential protocol)")
    e.add_argument("--device", default=settings.device, help="auto, cpu or cuda")
    e.set_defaults(func=_eval)


def parse_duration(text: str) -> float:
    """Seconds in `90m`, `6h`, `3d` or a plain number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 6h, 3d)") from None


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from models.checkpoint import load_model, save_model
    from models.data.dataset import leave_one_out
    from models.inference import best_device
    from models.train import train

    start, meta = load_model(args.resume) if args.resume else (None, {})
    data, text, source, start = (_from_topics(args, settings, start, meta) if args.from_topics
                                 else _from_dataset(args, settings, start, meta))
    tr, va, _ = leave_one_out(data)
    cfg = start.cfg if start is not None else ModelConfig(
        n_items=data.n_items, scenarios=data.scenarios, dim=args.dim, layers=args.layers, heads=args.heads,
        max_len=args.max_len, dropout=args.dropout, attn_dropout=args.dropout,
        use_action=not args.item_only, use_scenario=not args.item_only, use_time_gap=not args.item_only,
    )
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     sampled_negatives=args.sampled_negatives, patience=args.patience)
    out = args.out or settings.model_dir / (f"{args.resume.name}-ft" if args.resume else Path(args.dataset).name)
    extra = {"dataset": source, "train_config": vars(tc), "resumed_from": meta.get("model_version")}

    def checkpoint(model: MultiViewModel, info: dict) -> None:
        save_model(model, data.item_ids, out, out.name, {**extra, **info})

    model, info = train(text, tr, va, cfg, tc, best_device(args.device), start=start, budget_s=args.time_budget,
                        on_best=checkpoint)
    version = save_model(model, data.item_ids, out, out.name, {**extra, **info})
    print(json.dumps({"model_dir": str(out), "model_version": version, "best_epoch": info["best_epoch"],
                      "best_valid_ndcg@10": round(info["best_valid_ndcg@10"], 4), "users": len(tr),
                      "items": data.n_items, "resumed_from": meta.get("model_version")}))
    return 0


Source = tuple["SequenceData", "np.ndarray", str, "MultiViewModel | None"]  # data, item text, where, the model


def _from_dataset(args: argparse.Namespace, settings: Settings, start: MultiViewModel | None, meta: dict
                  ) -> Source:
    """The data set's events and catalog; the item vocabulary the resumed model's, if one is."""
    from models.data.dataset import load
    from models.text import cached_embeddings

    folder = resolve(args.dataset, settings)
    data = load(folder, start.cfg.scenarios if start else settings.scenarios, meta.get("item_ids"))
    return data, cached_embeddings([it.text for it in data.items], folder / "item_text.npy"), str(folder), start


def _from_topics(args: argparse.Namespace, settings: Settings, start: MultiViewModel | None, meta: dict
                 ) -> Source:
    """The events on the scenario topics (since --since) and the catalog on iu.items. A resumed model's
    vocabulary grows by the items published since it was trained (their rows start at the text
    projection); events naming an item that is nowhere are left out."""
    import time

    import numpy as np

    from models.data.contract import Event
    from models.data.dataset import build
    from models.text import embed_texts
    from models.train import extend_vocabulary
    from streams.core.decode import decode_event
    from streams.kafka.broker import configured_bootstrap
    from streams.kafka.control import published_items, read_since
    from streams.kafka.topics import events_topic

    bootstrap = configured_bootstrap(settings)
    scenarios = start.cfg.scenarios if start is not None else settings.scenarios
    now_ms = int(time.time() * 1000)
    since_ms = now_ms - int(args.since * 1000) if args.since else 0
    raw = [v for s in scenarios for v in read_since(bootstrap, events_topic(s), since_ms)]
    events = [e for e in (decode_event(v, scenarios, now_ms) for v in raw) if isinstance(e, Event)]
    catalog = {it.item_id: it for it in published_items(bootstrap)}
    known = list(meta.get("item_ids", []))
    new = [i for i in dict.fromkeys([*catalog, *(e.item_id for e in events)]) if i in catalog and i not in known]
    ids = known + new
    events = [e for e in sorted(events, key=lambda e: e.ts) if e.item_id in catalog or e.item_id in known]
    if not events:
        raise CommandError(f"no valid events on the scenario topics of {bootstrap} to train on")
    # the new items' text: the whole vocabulary's for a model trained afresh (it has no known items)
    text = embed_texts([catalog[i].text for i in new]) if new else np.zeros((0, 384), np.float32)
    if start is not None:
        start = extend_vocabulary(start, text)
    data = build(events, list(catalog.values()), scenarios, ids)
    print(json.dumps({"events": len(events), "read": len(raw), "new_items": len(new)}), file=sys.stderr)
    return data, text, f"kafka://{bootstrap}", start


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from models.checkpoint import load_model
    from models.data.dataset import leave_one_out, load
    from models.evaluate import evaluate
    from models.inference import InterestEncoder, best_device

    model, meta = load_model(args.model)
    data = load(resolve(args.dataset, settings), model.cfg.scenarios, meta["item_ids"])
    tr, va, te = leave_one_out(data)
    enc = InterestEncoder(model, best_device(args.device), meta["model_version"])
    result = evaluate(enc, te if args.split == "test" else va, tr, exclude_history=not args.keep_history)
    print(json.dumps({"model_version": meta["model_version"], "split": args.split,
                      "exclude_history": not args.keep_history, **result}))
    return 0
