"""Side-by-side accuracy run: RecBole 1.2.1 SASRec vs our encoder on ml-100k, same protocol.

RecBole never becomes a product dependency: it is installed into a throwaway venv
(`var/bench/recbole-venv`) with the pins it needs to run beside torch 2.13 (numpy<2,
pandas 2.2, scipy 1.14, scikit-learn 1.5, setuptools<81), and run as a subprocess on the
ml-100k files inside its own wheel. Both sides: embedding 64, max length 50, 2 layers,
2 heads, dropout 0.5, CE loss over all items, Adam 1e-3, the same maximum epochs and
early stopping on validation NDCG@10 with patience 10; chronological leave-one-out
with full ranking. RecBole masks no history items for sequential models, so our model is
scored both ways.

    python -m ops.bench.recbole_peer --model var/models/ml-100k [--epochs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

VENV = Path("var/bench/recbole-venv")
RESULT = VENV.parent / "recbole-result.json"
PINS = ["numpy<2", "pandas==2.2.*", "scipy==1.14.*", "scikit-learn==1.5.*", "setuptools<81", "colorlog==4.7.2",
        "colorama==0.4.4", "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable", "psutil", "tqdm"]

PRELUDE = textwrap.dedent("""
    # recbole.quick_start imports ray at module level; the pipeline below is what it runs.
    import json, sys
    import numpy as np
    # RecBole's Config aliases np.float_ and friends, which numpy 2 removed; a no-op on numpy<2.
    for name, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, name):
            setattr(np, name, value)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed
    config = Config(model="SASRec", dataset="ml-100k", config_dict=json.loads(sys.argv[1]))
""")

# Forward only, the peer of ops.bench.encoder: SASRec built on ml-100k (1,683 item ids, the size of
# ours), eval mode, full-length sequences, timed by the same helper as our encoder.
FORWARD = PRELUDE + textwrap.dedent("""
    import torch
    from ops.bench.timing import rate
    args = json.loads(sys.argv[2])
    dev = torch.device(config["device"])
    model = SASRec(config, create_dataset(config)).to(dev).eval()
    rows = []
    for dtype in (("fp32", "bf16") if dev.type == "cuda" else ("fp32",)):
        for batch in args["batches"]:
            gen = torch.Generator().manual_seed(0)
            seq = torch.randint(1, model.n_items, (batch, config["MAX_ITEM_LIST_LENGTH"]), generator=gen).to(dev)
            lengths = torch.full((batch,), config["MAX_ITEM_LIST_LENGTH"], device=dev)
            autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
            @torch.inference_mode()
            def forward(seq=seq, lengths=lengths, autocast=autocast):
                with autocast:
                    model(seq, lengths)
            rows.append({"device": dev.type, "dtype": dtype, "batch": batch,
                         "forward_seq_s": rate(forward, batch, dev, args["min_s"])})
    print("RESULT " + json.dumps(rows))
""")

RUNNER = PRELUDE + textwrap.dedent("""
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train.dataset).to(config["device"])
    trainer = Trainer(config, model)
    best_valid, best_result = trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    print("RESULT " + json.dumps({"best_valid_result": {k: float(v) for k, v in best_result.items()},
                                  "test_result": {k: float(v) for k, v in result.items()}}))
""")


def ensure_venv() -> Path:
    py = (VENV / "bin" / "python").absolute()
    if py.exists():
        return py
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", "recbole==1.2.1"], check=True)
    subprocess.run([*pip, "torch==2.13.0", *PINS], check=True)
    return py


def dataset_dir(py: Path) -> Path:
    """RecBole's own ml-100k atomic files, from the installed wheel."""
    out = subprocess.run([str(py), "-c", "import recbole, os; print(os.path.dirname(recbole.__file__))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "dataset_example"


def sasrec_config(py: Path, gpu: bool, **overrides: object) -> dict:
    """SASRec the size of our encoder (d=64, 2 layers, 2 heads, L=50) on RecBole's own ml-100k."""
    return {
        "data_path": str(dataset_dir(py)), "checkpoint_dir": "saved", "use_gpu": gpu,
        "reproducibility": True, "show_progress": False, "stopping_step": 10,
        "train_batch_size": 2048, "learning_rate": 0.001, "train_neg_sample_args": None, "loss_type": "CE",
        "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 50,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        **overrides,
    }


def run_in_venv(py: Path, script: str, *args: object) -> object:
    """Run `script` under RecBole's interpreter; its answer is the stdout line after `RESULT `."""
    root = str(Path(__file__).resolve().parents[2])  # ops.bench.timing is importable there, nothing else of ours
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": root}
    work = (VENV.parent / "recbole-run").absolute()  # RecBole writes log/ and log_tensorboard/ into its cwd
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(py), "-c", script, *(json.dumps(a) for a in args)], stdout=subprocess.PIPE,
                          text=True, env=env, cwd=work)  # RecBole's log goes to stderr, i.e. the terminal: progress
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"RecBole failed:\n{proc.stdout[-3000:]}")
    return json.loads(line[len("RESULT "):])


def run_recbole(py: Path, epochs: int, seed: int, gpu: bool) -> dict:
    return run_in_venv(py, RUNNER, sasrec_config(py, gpu, seed=seed, epochs=epochs))


def forward_rates(py: Path, batches: list[int], min_s: float, gpu: bool) -> list[dict]:
    """SASRec forward sequences/s at each batch size (fp32, and bf16 on CUDA)."""
    return run_in_venv(py, FORWARD, sasrec_config(py, gpu, seed=0), {"batches": batches, "min_s": min_s})


def run_ours(model_dir: Path, keep_history: bool) -> dict:
    cmd = [sys.executable, "-m", "streams.cli", "eval", "--model", str(model_dir), "--dataset", "ml-100k"]
    out = subprocess.run([*cmd, *(["--keep-history"] if keep_history else [])],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, action="append", default=[],
                    help="our checkpoint folder(s), trained on ml-100k (repeat to compare several)")
    ap.add_argument("--epochs", type=int, default=200, help="maximum epochs for RecBole (match our training)")
    ap.add_argument("--seed", type=int, default=2020, help="RecBole seed")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--python", type=Path, default=None,
                    help="an interpreter that already has RecBole (e.g. on a GPU machine) instead of the venv")
    ap.add_argument("--gpu", action="store_true", help="let RecBole train on CUDA (a lent GPU: CPU takes hours)")
    ap.add_argument("--recbole-result", type=Path, default=None,
                    help="a RecBole result JSON from an earlier run (skip running RecBole)")
    args = ap.parse_args()
    if args.recbole_result:
        rb_all = json.loads(args.recbole_result.read_text())
    else:
        rb_all = run_recbole(args.python or ensure_venv(), args.epochs, args.seed, args.gpu)
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(rb_all))
    rb = rb_all["test_result"]
    rows = [("RecBole 1.2.1 SASRec", "no mask", rb["hit@10"], rb["ndcg@10"], rb["mrr@10"])]
    for m in args.model:
        for keep in (True, False):
            r = run_ours(m, keep)
            mask = "no mask" if keep else "history masked"
            for name in ("model", "transformer_view", "popularity"):
                x = r[name]
                rows.append((f"ours {m.name} {name}", mask, x["hr@10"], x["ndcg@10"], x["mrr@10"]))
    if args.json:
        print(json.dumps({"rows": [dict(zip(("name", "protocol", "hr@10", "ndcg@10", "mrr@10"), r, strict=True))
                                   for r in rows]}))
        return 0
    print(f"{'run':<44} {'protocol':<15} {'HR@10':>7} {'NDCG@10':>8} {'MRR@10':>7}")
    for name, proto, hr, nd, mrr in rows:
        print(f"{name:<44} {proto:<15} {hr:>7.4f} {nd:>8.4f} {mrr:>7.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
