"""Encoder throughput: sequences/s of the transformer view at several batch sizes, length 50.

Two numbers per row: `forward` is the model alone on inputs already on the device;
`encode` is `InterestEncoder.encode`, what the stream pays per micro-batch (host arrays in,
host vectors out, transfers included). On CUDA both run fp32 and bf16 (autocast). In the same
run, the peer: RecBole 1.2.1's SASRec forward of the same size (d=64, 2 layers, 2 heads,
inner 256, L=50, ml-100k's 1,683 item ids), run in RecBole's own venv (ops.bench.recbole_peer)
and timed by the same helper (ops.bench.timing).

    python -m ops.bench.encoder [--batches 1,64,512,4096] [--no-peer] [--json] [--record]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from models.config import ModelConfig
from models.inference import InterestEncoder
from models.multiview import MultiViewModel
from ops.bench import recbole_peer
from ops.bench.report import emit, machine
from ops.bench.timing import rate


def windows(batch: int, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shape = (batch, cfg.max_len)
    return {
        "items": rng.integers(1, cfg.n_items + 1, shape),
        "actions": rng.integers(1, 6, shape),
        "scens": rng.integers(1, len(cfg.scenarios) + 1, shape),
        "gaps": rng.integers(1, 20, shape),
        "lengths": np.full(batch, cfg.max_len),
    }


def bench(model: MultiViewModel, dev: torch.device, dtype: str, batches: list[int], min_s: float) -> list[dict]:
    enc = InterestEncoder(model, dev)
    cfg = enc.cfg
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        w = windows(b, cfg, rng)
        t = {k: torch.as_tensor(v, device=dev) for k, v in w.items()}
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

        @torch.inference_mode()
        def forward(t=t, autocast=autocast) -> None:
            with autocast:
                enc.model.encode(enc.device_table, t["items"], t["actions"], t["scens"], t["gaps"])

        def encode(w=w) -> None:
            enc.encode(w)

        # InterestEncoder picks bf16 on CUDA itself; for the fp32 row call the model directly.
        full = encode if dtype == "bf16" or dev.type == "cpu" else forward
        rows.append({"device": dev.type, "dtype": dtype, "batch": b, "forward_seq_s": rate(forward, b, dev, min_s),
                     "encode_seq_s": rate(full, b, dev, min_s) if full is encode else None})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | device | dtype | batch | forward seq/s | encode() seq/s | ours / SASRec |",
             "|---|---|---|---:|---:|---:|---:|"]
    peer = {(r["device"], r["dtype"], r["batch"]): r["forward_seq_s"] for r in rows if r["model"] != "ours"}
    for r in rows:
        enc = f"{r['encode_seq_s']:,.0f}" if r.get("encode_seq_s") else "-"
        key = (r["device"], r["dtype"], r["batch"])
        ratio = f"{r['forward_seq_s'] / peer[key]:.2f}" if r["model"] == "ours" and key in peer else "-"
        lines.append(f"| {r['model']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['forward_seq_s']:,.0f} "
                     f"| {enc} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,64,512,4096", help="comma-separated batch sizes (default: %(default)s)")
    ap.add_argument("--items", type=int, default=1682, help="catalog size of the random model (default: ml-100k's)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="time per measurement (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    ap.add_argument("--no-peer", action="store_true", help="skip RecBole's SASRec (it installs a venv on first use)")
    ap.add_argument("--recbole-python", type=Path, default=None,
                    help="an interpreter that already has RecBole, instead of var/bench/recbole-venv")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--record", action="store_true", help="append a dated section to ops/bench/RESULTS.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(x) for x in args.batches.split(",")]
    cfg = ModelConfig(n_items=args.items, scenarios=("home", "search", "video"))
    model = MultiViewModel(cfg)
    model.trained_mask.fill_(True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    devices = [("cpu", "fp32")] + ([("cuda", "fp32"), ("cuda", "bf16")] if gpu else [])
    rows = [{"model": "ours", **r} for dev, dtype in devices
            for r in bench(model, torch.device(dev), dtype, batches, args.min_seconds)]
    if not args.no_peer:
        py = args.recbole_python or recbole_peer.ensure_venv()
        rows += [{"model": "RecBole SASRec", **r}
                 for r in recbole_peer.forward_rates(py, batches, args.min_seconds, gpu=bool(gpu))]
    result = {"machine": f"{machine()}; GPU {gpu or 'none'}; torch {torch.__version__}, "
                         f"{torch.get_num_threads()} CPU threads; d={cfg.dim}, {cfg.layers} layers, L={cfg.max_len}",
              "rows": rows}
    emit(result, table(rows), as_json=args.json, record=args.record, title="encoder bench",
         command="python -m ops.bench.encoder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
