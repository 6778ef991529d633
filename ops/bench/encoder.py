"""Encoder throughput: sequences/s of the transformer view at several batch sizes, length 50.

Two numbers per row: `forward` is the model alone on inputs already on the device;
`encode` is `InterestEncoder.encode`, what the stream pays per micro-batch (host arrays in,
host vectors out, transfers included). On CUDA both run fp32 and bf16 (autocast).

    python -m ops.bench.encoder [--batches 1,64,512,4096] [--model DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from models.config import ModelConfig
from models.inference import InterestEncoder
from models.multiview import MultiViewModel


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _rate(fn, batch: int, dev: torch.device, min_s: float) -> float:
    """Sequences/s: median over repeats of at least `min_s` in total, after warm-up."""
    for _ in range(3):
        fn()
    _sync(dev)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_s or len(times) < 5:
        t = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times))


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
                enc.model.encode(enc._table_t, t["items"], t["actions"], t["scens"], t["gaps"])

        def encode(w=w) -> None:
            enc.encode(w)

        # InterestEncoder picks bf16 on CUDA itself; for the fp32 row call the model directly.
        full = encode if dtype == "bf16" or dev.type == "cpu" else forward
        rows.append({"device": dev.type, "dtype": dtype, "batch": b, "forward_seq_s": _rate(forward, b, dev, min_s),
                     "encode_seq_s": _rate(full, b, dev, min_s) if full is encode else None})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,64,512,4096", help="comma-separated batch sizes")
    ap.add_argument("--items", type=int, default=1682, help="catalog size of the random model (ml-100k: 1682)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(x) for x in args.batches.split(",")]
    cfg = ModelConfig(n_items=args.items, scenarios=("home", "search", "video"))
    model = MultiViewModel(cfg)
    model.trained_mask.fill_(True)
    rows = bench(model, torch.device("cpu"), "fp32", batches, args.min_seconds)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if gpu:
        for dtype in ("fp32", "bf16"):
            rows += bench(model, torch.device("cuda"), dtype, batches, args.min_seconds)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "gpu": gpu, "torch": torch.__version__, "dim": cfg.dim, "layers": cfg.layers, "max_len": cfg.max_len}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
        return 0
    print(json.dumps(machine))
    print(f"{'device':<7} {'dtype':<5} {'batch':>6} {'forward seq/s':>14} {'encode() seq/s':>15}")
    for r in rows:
        enc = f"{r['encode_seq_s']:>15,.0f}" if r["encode_seq_s"] else f"{'-':>15}"
        print(f"{r['device']:<7} {r['dtype']:<5} {r['batch']:>6} {r['forward_seq_s']:>14,.0f} {enc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
