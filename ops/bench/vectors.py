"""Milvus (milvus-lite by default) batched vs single calls: user-vector upserts and item searches;
and the exact in-process search the worker uses instead on milvus-lite (IU_RETRIEVAL=local).

Why: the worker makes one upsert and one search per micro-batch, never one per user. This shows
what that buys at the catalog sizes of ml-100k (1,682 items) and of synthetic 100k and 1M-item
catalogs (random unit vectors, d=64, HNSW as in the product), and where an exact scan of the
item table stops beating a Milvus search. Each size gets a fresh store.

    python -m ops.bench.vectors [--sizes 1682,100000,1000000] [--json] [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from prometheus_client import CollectorRegistry
from tqdm import tqdm

from models.inference import top_inner_product
from ops.bench.report import emit, machine
from streams.monitoring.metrics import WorkerMetrics
from streams.vectors.store import ItemRow, UserRow, VectorStore, connect

DIM = 64
LIMIT = 90  # what the worker asks for: 4 * top_k + max_len


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def per_second(n: int, fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return n / (time.perf_counter() - start)


def bench_size(store: VectorStore, n_items: int, queries: int, batch: int, rng: np.random.Generator) -> dict:
    ids = [f"i{k}" for k in range(n_items)]
    load_start = time.perf_counter()
    for start in tqdm(range(0, n_items, 50_000), desc=f"load {n_items:,} items", unit="chunk", leave=False):
        end = min(start + 50_000, n_items)
        store.upsert_items([ItemRow(i, "", v, "bench") for i, v in zip(ids[start:end], unit(rng, end - start),
                                                                         strict=True)])
    load_s = time.perf_counter() - load_start
    q = unit(rng, queries)
    store.search_items(q[:batch], LIMIT)  # warm-up: the first search loads the index
    search_batched = per_second(queries, lambda: [store.search_items(q[i:i + batch], LIMIT)
                                                  for i in range(0, queries, batch)])
    singles = min(queries, 200)
    search_single = per_second(singles, lambda: [store.search_items(q[i:i + 1], LIMIT) for i in range(singles)])
    table = torch.as_tensor(unit(rng, n_items))  # what the worker scans with IU_RETRIEVAL=local
    search_local = per_second(queries, lambda: [top_inner_product(table, q[i:i + batch], LIMIT)
                                                for i in range(0, queries, batch)])
    rows = [UserRow(f"u{k}", "home", v, "bench") for k, v in enumerate(unit(rng, queries))]
    upsert_batched = per_second(queries, lambda: [store.upsert_users(rows[i:i + batch])
                                                  for i in range(0, queries, batch)])
    upsert_single = per_second(singles, lambda: [store.upsert_users(rows[i:i + 1]) for i in range(singles)])
    return {"items": n_items, "load_items_s": round(n_items / load_s), "batch": batch,
            "search_batched_q_s": round(search_batched), "search_single_q_s": round(search_single, 1),
            "exact_local_q_s": round(search_local),
            "upsert_batched_rows_s": round(upsert_batched), "upsert_single_rows_s": round(upsert_single, 1)}


def table(rows: list[dict]) -> str:
    head = (f"| items | load items/s | Milvus search q/s, batched ({rows[0]['batch']}) | single | batched/single "
            f"| exact in-process q/s, batched | exact/Milvus | upsert rows/s batched | single | batched/single |\n"
            f"|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['items']:,} | {r['load_items_s']:,} | {r['search_batched_q_s']:,} | {r['search_single_q_s']:,} "
             f"| {r['search_batched_q_s'] / r['search_single_q_s']:.0f}× | {r['exact_local_q_s']:,} "
             f"| {r['exact_local_q_s'] / r['search_batched_q_s']:.1f}× | {r['upsert_batched_rows_s']:,} "
             f"| {r['upsert_single_rows_s']:,} | {r['upsert_batched_rows_s'] / r['upsert_single_rows_s']:.0f}× |"
             for r in rows]
    return "\n".join([head, *lines])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1682,100000,1000000", help="comma-separated catalog sizes")
    ap.add_argument("--queries", type=int, default=2048, help="searches and user upserts per size")
    ap.add_argument("--batch", type=int, default=256, help="rows per batched call (the worker's micro-batch)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--record", action="store_true", help="append a dated section to ops/bench/RESULTS.md")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory(prefix="iu-bench-vectors-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            client = connect(str(Path(tmp) / f"{n}.db"))
            # a long timeout: the first search at 1M builds the index, which takes minutes
            store = VectorStore(client, DIM, 900, WorkerMetrics(CollectorRegistry()), "bench")
            results.append(bench_size(store, n, args.queries, args.batch, rng))
            client.close()
    result = {"machine": f"{machine()}; milvus-lite in process; d={DIM}, limit={LIMIT}, HNSW", "rows": results}
    emit(result, table(results), as_json=args.json, record=args.record, title="vectors bench",
         command="python -m ops.bench.vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
