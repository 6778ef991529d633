"""`iu train` and `iu eval`: fit the multi-view model and measure it offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.config import ModelConfig, TrainConfig
from streams.cli.datasets import resolve
from streams.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings, fmt: type) -> None:
    t = sub.add_parser(
        "train",
        help="train the multi-view model on a data set",
        description="Train on the leave-one-out training split (all but each user's last two events), "
        "select the epoch by validation NDCG@10, and write a checkpoint directory.",
        formatter_class=fmt,
    )
    t.add_argument("--dataset", default="ml-100k", help="ml-100k, synth, or a folder with events.csv/items.csv")
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


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from models.checkpoint import save_model
    from models.data.dataset import leave_one_out, load
    from models.inference import best_device
    from models.text import cached_embeddings
    from models.train import train

    folder = resolve(args.dataset, settings)
    data = load(folder, settings.scenarios)
    tr, va, _ = leave_one_out(data)
    cfg = ModelConfig(
        n_items=data.n_items, scenarios=data.scenarios, dim=args.dim, layers=args.layers, heads=args.heads,
        max_len=args.max_len, dropout=args.dropout, attn_dropout=args.dropout,
        use_action=not args.item_only, use_scenario=not args.item_only, use_time_gap=not args.item_only,
    )
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     sampled_negatives=args.sampled_negatives, patience=args.patience)
    text = cached_embeddings([it.text for it in data.items], folder / "item_text.npy")
    model, info = train(text, tr, va, cfg, tc, best_device(args.device))
    out = args.out or settings.model_dir / Path(args.dataset).name
    version = save_model(model, data.item_ids, out, out.name,
                         {"dataset": str(folder), "train_config": vars(tc), **info})
    print(json.dumps({"model_dir": str(out), "model_version": version, "best_epoch": info["best_epoch"],
                      "best_valid_ndcg@10": round(info["best_valid_ndcg@10"], 4)}))
    return 0


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
