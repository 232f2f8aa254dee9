"""Vector-index benchmark for cross-camera re-identification: which index answers "the stored
embeddings within a time horizon most similar to this one" fast enough as the store grows
(target: P95 ≤ 20 ms at 100 000 stored 1280-d embeddings), chosen by measurement.

    python bench/vector_bench.py                 # the full comparison (about 45 minutes, 2 cores)
    python bench/vector_bench.py --identities 500 --repeats 1 --queries 300   # a smoke run

Data (seeded): ``--identities`` identities × ``--views`` noisy views, 1280-d, shaped like
pooled CNN features (a shared positive mean, a low-rank identity part, per-identity view noise,
ReLU, unit length: same-identity cosine about 0.8, different identities about 0.5; the record
states the measured figures). Every identity is seen in one visit of ``--visit-s`` seconds at
a random time within ``--span-days`` days; entries are stored in time order, as a live store
receives them; keys are the row numbers. Queries are fresh views of stored identities: the
unfiltered set of any identity, the filtered set of identities seen within the horizon (the
newest ``--horizon-share`` of the store, "the last N minutes"). Ground truth is exact float32
search (unfiltered over the store, filtered over the horizon).

Candidates, each in a fresh process per repeat, all limited to ``--threads`` threads (BLAS,
OpenMP and the libraries' own pools): numpy float32 brute force, numpy float16 storage
(upcast by chunks into a float32 matrix-vector product: numpy's own float16 product has no
BLAS and is about 15× slower), faiss IndexFlatIP (in an IndexIDMap2, so ids survive removal)
and IndexHNSWFlat, usearch HNSW with float32 and with the storage type the library picks for
this CPU, sqlite-vec's vec0 table (in-memory database) and hearthwatch's own VectorIndex (the
design the decision picked, measured the same way). Peers get the same HNSW parameters
(M=16, efConstruction=128, efSearch=64: usearch's defaults). A time filter is applied the way
each library offers: a boolean mask and a gather for numpy, an IDSelectorBitmap for faiss, a
metadata column in vec0's KNN query, and for usearch (no filter in its Python API) a search for
``k / share × 2`` neighbours, filtered afterwards and asked again for 4× more until ``k``
survive.

Per candidate and repeat: build (bulk insert) seconds, anonymous memory added by the built index
(RssAnon; the data file is memory-mapped, so it is not counted), latency of single searches
(k=10) after the same warm-up, unfiltered and filtered, each from ``--queries`` queries; a
candidate whose warm-up median already misses the SLA is measured on ``--cut-queries``
queries (P50/P95, no P99) and marked cut short. Recall@k against the ground truth; entries
returned from outside the horizon (must be 0); the cost of removing the oldest
``--delete-share`` of the store in one call (retention) and whether a removed key is ever
returned afterwards; the latency of single adds into the built index. For VectorIndex also the
crossovers: its exact slice scan and its exact gather against its graph, each forced over
windows of growing size, which set its ``exact_max`` and ``gather_max``.

The whole comparison runs ``--repeats`` times, candidates in a rotated order each time; every
figure is reported with its spread (median, min, max). One JSON record goes to
``bench/results/vector_bench_cpu_<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (
    "numpy_f32",
    "numpy_f16",
    "faiss_flat",
    "faiss_hnsw",
    "usearch_f32",
    "usearch_auto",
    "sqlite_vec",
    "vector_index",
)
SKIPPED = {
    "hnswlib": "no wheel on PyPI (hnswlib 0.8.0 is an sdist only, December 2023): installing "
    "it means compiling C++, so it is not measured",
}
PACKAGING = (
    "checked with pip's resolver (--only-binary, --platform, --python-version): usearch 2.26.6 "
    "has manylinux_2_28 wheels for x86_64 and aarch64 on CPython 3.11 and 3.13 (its dependency "
    "numkong too); faiss-cpu 1.15.1 has abi3 manylinux_2_28 wheels for both; sqlite-vec 0.1.9 a "
    "py3-none manylinux2014 wheel for both, but it loads only into a Python whose sqlite3 allows "
    "extensions (this venv's does not)"
)
HNSW = {"M": 16, "ef_construction": 128, "ef_search": 64}
CROSSOVER_SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000)


class Unsupported(Exception):
    """The candidate cannot do this operation (recorded, not measured)."""


# -- data ------------------------------------------------------------------------------------


def make_data(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Writes the store, the queries and the ground truth into ``directory`` (``.npy``)."""
    rng = np.random.default_rng(args.seed)
    dim, ids, rank = args.dim, args.identities, 64
    basis = rng.standard_normal((rank, dim), dtype=np.float32) / np.float32(math.sqrt(rank))
    mean = np.abs(rng.standard_normal(dim, dtype=np.float32)) * np.float32(0.8)
    centres = rng.standard_normal((ids, rank), dtype=np.float32) @ basis
    centres += np.float32(0.6) * rng.standard_normal((ids, dim), dtype=np.float32)
    sigma = rng.uniform(0.5, 1.1, ids).astype(np.float32)

    def views_of(who: np.ndarray) -> np.ndarray:
        out = np.empty((len(who), dim), dtype=np.float32)
        for lo in range(0, len(who), 8192):
            w = who[lo : lo + 8192]
            x = mean + centres[w] + sigma[w, None] * rng.standard_normal((len(w), dim), np.float32)
            np.maximum(x, 0, out=x)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[lo : lo + len(w)] = x
        return out

    who = np.repeat(np.arange(ids), args.views)
    span_s = args.span_days * 86_400.0
    start = rng.uniform(0, span_s - args.visit_s, ids)
    seen = start[who] + rng.uniform(0, args.visit_s, len(who))
    order = np.argsort(seen, kind="stable")
    who, seen = who[order], seen[order]
    vectors = views_of(who)
    n = len(who)
    keys = np.arange(n, dtype=np.int64)
    first_recent = int(n * (1 - args.horizon_share))
    since = float(seen[first_recent])
    recent_ids = np.unique(who[first_recent:])
    n_del = int(n * args.delete_share)

    q_all_who = rng.integers(0, ids, args.queries)
    q_recent_who = rng.choice(recent_ids, args.queries)
    queries = {
        "q_warm": views_of(rng.integers(0, ids, args.warmup)),
        "q_warm_recent": views_of(rng.choice(recent_ids, max(args.warmup // 4, 10))),
        "q_all": views_of(q_all_who),
        "q_recent": views_of(q_recent_who),
        "q_del": views_of(rng.choice(np.unique(who[:n_del]), args.delete_queries)),
        "v_add": views_of(rng.integers(0, ids, args.adds)),
    }
    truth_all = exact_top(queries["q_all"], vectors, keys, args.k)
    truth_recent = exact_top(
        queries["q_recent"], vectors[first_recent:], keys[first_recent:], args.k
    )
    truth_del = exact_top(queries["q_del"], vectors[n_del:], keys[n_del:], args.k)
    for name, array in {
        "X": vectors,
        "ts": seen,
        "keys": keys,
        "truth_all": truth_all,
        "truth_recent": truth_recent,
        "truth_del": truth_del,
        **queries,
    }.items():
        np.save(directory / f"{name}.npy", array)

    # what the data looks like: cosine of same-identity views against different identities
    a, b = rng.integers(0, n, 4000), rng.integers(0, n, 4000)
    other = who[a] != who[b]
    pairs = np.flatnonzero(who[:-1] == who[1:])[:4000]
    same = np.einsum("ij,ij->i", vectors[pairs], vectors[pairs + 1])
    diff = np.einsum("ij,ij->i", vectors[a[other]], vectors[b[other]])
    q_truth_same = float(np.mean(who[truth_all] == q_all_who[:, None]))
    params = {
        "n": n,
        "dim": dim,
        "k": args.k,
        "since": since,
        "now": float(seen[-1]),
        "horizon_minutes": (float(seen[-1]) - since) / 60,
        "in_horizon": n - first_recent,
        "recent_identities": len(recent_ids),
        "delete_keys": n_del,
        "sla_ms": args.sla_ms,
        "cut_queries": args.cut_queries,
        "threads": args.threads,
        "hnsw": HNSW,
        "crossover_sizes": [m for m in CROSSOVER_SIZES if m <= n],
        "crossover_queries": args.crossover_queries,
    }
    (directory / "params.json").write_text(json.dumps(params))
    return {
        **params,
        "identities": ids,
        "views_per_identity": args.views,
        "span_days": args.span_days,
        "visit_s": args.visit_s,
        "cosine_same_identity_p5_p50_p95": np.percentile(same, [5, 50, 95]).round(3).tolist(),
        "cosine_other_identity_p5_p50_p95": np.percentile(diff, [5, 50, 95]).round(3).tolist(),
        "exact_top_k_share_of_query_identity": round(q_truth_same, 4),
    }


def exact_top(queries: np.ndarray, vectors: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """The exact top ``k`` keys per query, best first (float32 matrix products)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), 256):
        scores = queries[lo : lo + 256] @ vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, part, axis=1)
        ranked = np.take_along_axis(part, np.argsort(-best, axis=1), axis=1)
        out[lo : lo + 256] = keys[ranked]
    return out


# -- candidates (run in the worker process) ---------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part])]


class NumpyF32:
    dtype: Any = np.float32

    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        n = len(x)
        self.v = np.empty((n + 1024, x.shape[1]), dtype=self.dtype)
        self.v[:n] = x
        self.ts = np.full(n + 1024, np.nan)
        self.ts[:n] = ts
        self.keys = np.zeros(n + 1024, dtype=np.int64)
        self.keys[:n] = keys
        self.n = n
        self.dead = 0
        self.row_of = {int(key): i for i, key in enumerate(keys)}

    def scores(self, rows: slice | np.ndarray, q: np.ndarray) -> np.ndarray:
        return self.v[rows] @ q

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        if since is None:
            s = self.scores(slice(0, self.n), q)
            if self.dead:
                s[np.isnan(self.ts[: self.n])] = -np.inf
            return self.keys[top_k(s, k)]
        rows = np.flatnonzero(self.ts[: self.n] >= since)
        return self.keys[rows[top_k(self.scores(rows, q), k)]]

    def remove(self, keys: np.ndarray) -> int:
        rows = [self.row_of.pop(int(key)) for key in keys if int(key) in self.row_of]
        self.ts[rows] = np.nan  # a tombstone; compaction would be amortised, as in VectorIndex
        self.dead += len(rows)
        return len(rows)

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.v[self.n], self.ts[self.n], self.keys[self.n] = vector, seen, key
        self.row_of[key] = self.n
        self.n += 1


class NumpyF16(NumpyF32):
    dtype = np.float16
    chunk = 8192

    def scores(self, rows: slice | np.ndarray, q: np.ndarray) -> np.ndarray:
        if isinstance(rows, np.ndarray):
            return self.v[rows].astype(np.float32) @ q
        lo, hi = rows.start or 0, rows.stop
        out = np.empty(hi - lo, dtype=np.float32)
        for a in range(lo, hi, self.chunk):
            b = min(hi, a + self.chunk)
            out[a - lo : b - lo] = self.v[a:b].astype(np.float32) @ q
        return out


class FaissBase:
    def setup(self, p: dict[str, Any]) -> Any:
        import faiss

        faiss.omp_set_num_threads(p["threads"])
        self.faiss = faiss
        return faiss

    def selector(self, since: float) -> tuple[Any, Any]:
        bits = np.packbits(self.ts[: self.n_ids] >= since, bitorder="little")
        sel = self.faiss.IDSelectorBitmap(self.n_ids, self.faiss.swig_ptr(bits))
        return sel, bits  # the bitmap must outlive the selector

    def grow_ts(self, key: int, seen: float) -> None:
        if key >= len(self.ts):
            self.ts = np.concatenate([self.ts, np.full(len(self.ts) // 2 + 1, np.nan)])
        self.ts[key] = seen
        self.n_ids = max(self.n_ids, key + 1)


class FaissFlat(FaissBase):
    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        faiss = self.setup(p)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
        self.index.add_with_ids(np.ascontiguousarray(x), keys)
        self.ts, self.n_ids = ts.copy(), len(ts)

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        if since is None:
            return self.index.search(q[None], k)[1][0]
        sel, _bits = self.selector(since)
        params = self.faiss.SearchParameters(sel=sel)
        return self.index.search(q[None], k, params=params)[1][0]

    def remove(self, keys: np.ndarray) -> int:
        removed = int(self.index.remove_ids(self.faiss.IDSelectorBatch(keys)))
        self.ts[keys] = np.nan
        return removed

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.index.add_with_ids(vector[None], np.array([key], dtype=np.int64))
        self.grow_ts(key, seen)


class FaissHnsw(FaissBase):
    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        faiss = self.setup(p)
        self.index = faiss.IndexHNSWFlat(x.shape[1], HNSW["M"], faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = HNSW["ef_construction"]
        self.index.hnsw.efSearch = HNSW["ef_search"]
        self.index.add(np.ascontiguousarray(x))  # ids are positions: the keys here
        self.ts, self.n_ids = ts.copy(), len(ts)

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        if since is None:
            return self.index.search(q[None], k)[1][0]
        sel, _bits = self.selector(since)
        params = self.faiss.SearchParametersHNSW(sel=sel, efSearch=HNSW["ef_search"])
        found = self.index.search(q[None], k, params=params)[1][0]
        return found[found >= 0]

    def remove(self, keys: np.ndarray) -> int:
        try:
            return int(self.index.remove_ids(self.faiss.IDSelectorBatch(keys)))
        except RuntimeError as exc:
            raise Unsupported(str(exc).strip().splitlines()[-1]) from exc

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.index.add(vector[None])
        self.grow_ts(key, seen)


class Usearch:
    def __init__(self, dtype: str | None) -> None:
        self.dtype = dtype

    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        from usearch.index import Index

        self.threads = p["threads"]
        self.index = Index(
            ndim=x.shape[1],
            metric="ip",
            dtype=self.dtype,
            connectivity=HNSW["M"],
            expansion_add=HNSW["ef_construction"],
            expansion_search=HNSW["ef_search"],
        )
        self.index.add(keys, np.ascontiguousarray(x), threads=self.threads)
        self.ts = np.concatenate([ts, np.full(4096, np.nan)])
        self.live = len(ts)

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        if since is None:
            return self.index.search(q, k, threads=1).keys.astype(np.int64)
        share = max(float(np.count_nonzero(self.ts >= since)) / self.live, 1e-9)
        fetch = min(self.live, max(2 * k, math.ceil(2 * k / share)))
        while True:
            found = self.index.search(q, fetch, threads=1).keys.astype(np.int64)
            kept = found[self.ts[found] >= since]
            if len(kept) >= k or fetch >= self.live:
                return kept[:k]
            fetch = min(self.live, fetch * 4)

    def remove(self, keys: np.ndarray) -> int:
        removed = int(np.sum(self.index.remove(keys, threads=self.threads)))
        self.ts[keys] = np.nan
        self.live -= removed
        return removed

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.index.add(key, vector, threads=1)
        self.ts[key] = seen
        self.live += 1


class SqliteVec:
    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        import sqlite3

        import sqlite_vec

        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.enable_load_extension(True)
        sqlite_vec.load(self.db)
        self.db.enable_load_extension(False)
        self.db.execute(
            f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{x.shape[1]}] "
            "distance_metric=cosine, seen_at float)"
        )
        self.db.execute("BEGIN")
        for lo in range(0, len(x), 4096):
            chunk = np.ascontiguousarray(x[lo : lo + 4096])
            self.db.executemany(
                "INSERT INTO v(rowid, embedding, seen_at) VALUES (?, ?, ?)",
                zip(
                    keys[lo : lo + 4096].tolist(),
                    (row.tobytes() for row in chunk),
                    ts[lo : lo + 4096].tolist(),
                    strict=False,
                ),
            )
        self.db.execute("COMMIT")

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        if since is None:
            rows = self.db.execute(
                "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                (q.tobytes(), k),
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? AND seen_at >= ? "
                "ORDER BY distance",
                (q.tobytes(), k, since),
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def remove(self, keys: np.ndarray) -> int:
        before = self.db.total_changes
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM v WHERE rowid = ?", ((int(key),) for key in keys))
        self.db.execute("COMMIT")
        return self.db.total_changes - before

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.db.execute(
            "INSERT INTO v(rowid, embedding, seen_at) VALUES (?, ?, ?)",
            (key, vector.tobytes(), seen),
        )


class HearthwatchIndex:
    def build(self, x: np.ndarray, ts: np.ndarray, keys: np.ndarray, p: dict[str, Any]) -> None:
        from hearthwatch.security.vector_index import VectorIndex

        self.index = VectorIndex(x.shape[1])
        for lo in range(0, len(x), 8192):
            self.index.add_many(keys[lo : lo + 8192], x[lo : lo + 8192], ts[lo : lo + 8192])

    def search(self, q: np.ndarray, k: int, since: float | None) -> np.ndarray:
        found = self.index.search(q, k, since=-math.inf if since is None else since)
        return np.array([key for key, _ in found], dtype=np.int64)

    def remove(self, keys: np.ndarray) -> int:
        return self.index.remove(keys.tolist())

    def add(self, key: int, vector: np.ndarray, seen: float) -> None:
        self.index.add(key, vector, seen)

    def details(self) -> dict[str, Any]:
        graph = self.index._graph
        return {
            "exact_max": self.index.exact_max,
            "gather_max": self.index.gather_max,
            "graph_dtype": str(graph.dtype),
            "graph_memory_mb": graph.memory_usage / 2**20,
            "matrix_mb": self.index._vectors.nbytes / 2**20,
        }

    def crossover(self, q: np.ndarray, ts: np.ndarray, p: dict[str, Any]) -> list[dict[str, Any]]:
        """The index's three paths forced in turn over the newest ``m`` entries, for each size
        ``m``: the exact slice scan, the exact gather (what a window of scattered rows costs;
        rows of 5 KB are copied whether neighbours or not) and the graph."""
        index, k, n = self.index, p["k"], len(ts)
        keep = index.exact_max, index.gather_max
        big = 10**12
        rows = []
        try:
            for m in p["crossover_sizes"]:
                since = float(ts[n - m])
                figures: dict[str, Any] = {"window": m}
                exact: list[list[int]] = []
                for path, limits in (("exact", (big, 0)), ("gather", (0, big)), ("graph", (0, 0))):
                    index.exact_max, index.gather_max = limits
                    for v in q[:10]:
                        index.search(v, k, since=since)
                    lat, got = [], []
                    for v in q:
                        t0 = time.perf_counter_ns()
                        found = index.search(v, k, since=since)
                        lat.append((time.perf_counter_ns() - t0) / 1e6)
                        got.append([key for key, _ in found])
                    figures[f"{path}_ms"] = {
                        "p50": float(np.percentile(lat, 50)),
                        "p95": float(np.percentile(lat, 95)),
                        "samples": len(lat),
                    }
                    if path == "exact":
                        exact = got
                    else:
                        hits = sum(len(set(a) & set(b)) for a, b in zip(got, exact, strict=True))
                        figures[f"{path}_recall"] = hits / (k * len(q))
                rows.append(figures)
        finally:
            index.exact_max, index.gather_max = keep
        return rows


def make_candidate(name: str) -> Any:
    return {
        "numpy_f32": NumpyF32,
        "numpy_f16": NumpyF16,
        "faiss_flat": FaissFlat,
        "faiss_hnsw": FaissHnsw,
        "usearch_f32": lambda: Usearch("f32"),
        "usearch_auto": lambda: Usearch(None),
        "sqlite_vec": SqliteVec,
        "vector_index": HearthwatchIndex,
    }[name]()


# -- the worker: one candidate, one repeat ------------------------------------------------------


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_searches(
    cand: Any, queries: np.ndarray, k: int, since: float | None
) -> tuple[list[float], list[np.ndarray], float]:
    """Latencies (ms), answers, and the process's CPU ms per query (all its threads)."""
    lat, found = [], []
    cpu0 = time.process_time()
    for q in queries:
        t0 = time.perf_counter_ns()
        keys = cand.search(q, k, since)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        found.append(np.asarray(keys, dtype=np.int64))
    return lat, found, (time.process_time() - cpu0) * 1e3 / max(len(queries), 1)


def recall(found: list[np.ndarray], truth: np.ndarray, k: int) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=False))
    return hits / (k * len(found))


def worker(name: str, directory: Path, out: Path) -> None:
    p = json.loads((directory / "params.json").read_text())
    load = {f.stem: np.load(f, mmap_mode="r") for f in directory.glob("*.npy")}
    ts, keys, k, since = np.array(load["ts"]), np.array(load["keys"]), p["k"], p["since"]
    result: dict[str, Any] = {"candidate": name, "python": sys.version.split()[0]}
    lat_out: dict[str, np.ndarray] = {}

    cand = make_candidate(name)
    gc.collect()
    before = rss_anon_mb()
    t0 = time.perf_counter()
    cand.build(load["X"], ts, keys, p)
    result["build_s"] = time.perf_counter() - t0
    gc.collect()
    result["memory_mb"] = rss_anon_mb() - before
    if hasattr(cand, "details"):
        result["details"] = cand.details()

    warm, _, _ = timed_searches(cand, load["q_warm"], k, None)
    warm_recent, _, _ = timed_searches(cand, load["q_warm_recent"], k, since)
    hopeless = float(np.median(warm)) > 5 * p["sla_ms"]
    for label, warm_lat, queries, truth, bound in (
        ("unfiltered", warm, load["q_all"], load["truth_all"], None),
        ("filtered", warm_recent, load["q_recent"], load["truth_recent"], since),
    ):
        median = float(np.median(warm_lat))
        cut = median > p["sla_ms"]
        count = len(queries)
        if cut:
            count = min(200 if median > 5 * p["sla_ms"] else p["cut_queries"], count)
        lat, found, cpu_ms = timed_searches(cand, queries[:count], k, bound)
        lat_out[label] = np.array(lat)
        outside = 0 if bound is None else sum(int(np.sum(ts[f] < bound)) for f in found)
        result[label] = {
            "cut_short": cut,
            "warmup_median_ms": median,
            "cpu_ms_per_query": cpu_ms,
            "recall": recall(found, truth[:count], k),
            "short_answers": sum(len(f) < k for f in found),
            "outside_horizon": outside,
        }

    if hasattr(cand, "crossover"):
        result["crossover"] = cand.crossover(
            np.array(load["q_all"][: p["crossover_queries"]]), ts, p
        )

    doomed = keys[: p["delete_keys"]]
    try:
        t0 = time.perf_counter()
        removed = cand.remove(doomed)
        seconds = time.perf_counter() - t0
        checks = load["q_del"][: 20 if hopeless else len(load["q_del"])]
        lat, found, _ = timed_searches(cand, checks, k, None)
        gone = set(doomed.tolist())
        result["delete"] = {
            "supported": True,
            "keys": len(doomed),
            "removed": int(removed),
            "seconds": seconds,
            "per_key_us": seconds / len(doomed) * 1e6,
            "removed_keys_returned_after": sum(len(gone & set(f.tolist())) for f in found),
            "recall_after": recall(found, load["truth_del"][: len(found)], k),
            "check_queries": len(found),
        }
    except Unsupported as exc:
        result["delete"] = {"supported": False, "reason": str(exc)}

    lat = []
    now = float(ts[-1])
    for i, v in enumerate(np.array(load["v_add"])):
        t0 = time.perf_counter_ns()
        cand.add(len(keys) + i, v, now + 1 + i)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    lat_out["add"] = np.array(lat)
    out.write_text(json.dumps(result))
    np.savez(out.with_suffix(".npz"), **lat_out)


# -- the driver ---------------------------------------------------------------------------------


def busy_ticks() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def sqlite_python() -> tuple[str | None, str]:
    """A Python whose sqlite3 can load extensions (sqlite-vec needs it), and why."""
    probe = "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)"
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            ok = subprocess.run([python, "-c", probe], capture_output=True, timeout=30)
        except OSError:
            continue
        if ok.returncode == 0:
            why = (
                ""
                if python == sys.executable
                else (
                    f"{sys.executable}'s sqlite3 module cannot load extensions (built without "
                    f"them), so sqlite_vec runs under {python} (same numpy and sqlite_vec, from "
                    "the venv's site-packages)"
                )
            )
            return python, why
    return None, "no Python here whose sqlite3 can load extensions"


def run_worker(
    name: str, directory: Path, repeat: int, args: argparse.Namespace, sqlite_py: str | None
) -> dict[str, Any]:
    out = directory / f"result_{name}_{repeat}.json"
    python = sqlite_py if name == "sqlite_vec" and sqlite_py else sys.executable
    env = dict(os.environ)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        env[var] = str(args.threads)
    site = [p for p in sys.path if p.endswith("site-packages")]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *site])
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--data", str(directory)]
    cmd += ["--out", str(out)]
    busy0, cpu0 = busy_ticks(), os.times()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.worker_timeout)
    wall = time.perf_counter() - t0
    busy1, cpu1 = busy_ticks(), os.times()
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], flush=True)
        return {"candidate": name, "error": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(out.read_text())
    latencies = np.load(out.with_suffix(".npz"))
    result["latencies"] = {key: latencies[key] for key in latencies.files}
    result["worker_wall_s"] = wall
    result["worker_cpu_share"] = (
        cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
    ) / wall
    result["machine_busy"] = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    # cores busy with anything but this worker (another process on a shared machine)
    cores = os.cpu_count() or 1
    result["other_load_cores"] = max(
        0.0, result["machine_busy"] * cores - result["worker_cpu_share"]
    )
    return result


def median_spread(values: list[float]) -> dict[str, float | int] | None:
    from hearthwatch.tuning.method import spread

    values = [v for v in values if v is not None and not math.isnan(v)]
    return spread(values) if values else None


def summarise(runs: list[dict[str, Any]], sla_ms: float) -> dict[str, Any]:
    """One candidate's figures over its repeats: each with its spread."""
    from hearthwatch.percentiles import percentiles

    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error") if runs else "not run"}
    out: dict[str, Any] = {
        "repeats": len(ok),
        "build_s": median_spread([r["build_s"] for r in ok]),
        "memory_mb": median_spread([r["memory_mb"] for r in ok]),
    }
    for label in ("unfiltered", "filtered", "add"):
        pcts = [percentiles(r["latencies"][label], supported_only=True) for r in ok]
        fig: dict[str, Any] = {"samples_per_repeat": [p["samples"] for p in pcts]}
        for q in ("p50", "p95", "p99", "mean", "max"):
            vals = [p[q] for p in pcts]
            fig[f"{q}_ms"] = None if any(v is None for v in vals) else median_spread(vals)
        if label != "add":
            fig["recall"] = median_spread([r[label]["recall"] for r in ok])
            fig["cut_short"] = any(r[label]["cut_short"] for r in ok)
            fig["outside_horizon"] = sum(r[label]["outside_horizon"] for r in ok)
            fig["short_answers"] = sum(r[label]["short_answers"] for r in ok)
            fig["cpu_ms_per_query"] = median_spread([r[label]["cpu_ms_per_query"] for r in ok])
            p95s = [p["p95"] for p in pcts]
            fig["meets_sla_every_repeat"] = all(v is not None and v <= sla_ms for v in p95s)
        out[label] = fig
    deletes = [r["delete"] for r in ok]
    if all(d["supported"] for d in deletes):
        out["delete"] = {
            "supported": True,
            "keys": deletes[0]["keys"],
            "seconds": median_spread([d["seconds"] for d in deletes]),
            "per_key_us": median_spread([d["per_key_us"] for d in deletes]),
            "removed_keys_returned_after": sum(d["removed_keys_returned_after"] for d in deletes),
            "recall_after": median_spread([d["recall_after"] for d in deletes]),
        }
    else:
        out["delete"] = {"supported": False, "reason": deletes[0].get("reason")}
    if "details" in ok[0]:
        out["details"] = ok[0]["details"]
    out["worker_cpu_share"] = median_spread([r["worker_cpu_share"] for r in ok])
    out["machine_busy"] = median_spread([r["machine_busy"] for r in ok])
    out["other_load_cores"] = median_spread([r["other_load_cores"] for r in ok])
    return out


def crossing(rows: list[dict[str, Any]], path: str, key: str = "p95") -> float | None:
    """The window where ``path``'s latency meets the graph's (exact cheaper below, the graph
    above), linearly interpolated between the measured sizes."""
    for a, b in zip(rows, rows[1:], strict=False):
        da = a[f"{path}_ms"][key] - a["graph_ms"][key]
        db = b[f"{path}_ms"][key] - b["graph_ms"][key]
        if da <= 0 < db:
            return float(a["window"] + (b["window"] - a["window"]) * (-da) / (db - da))
    return None


def crossover_summary(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in runs if "crossover" in r]
    if not ok:
        return None
    rows = []
    for i, row in enumerate(ok[0]["crossover"]):
        per = [r["crossover"][i] for r in ok]
        figures: dict[str, Any] = {"window": row["window"], "samples": row["exact_ms"]["samples"]}
        for path in ("exact", "gather", "graph"):
            for q in ("p50", "p95"):
                figures[f"{path}_{q}_ms"] = median_spread([x[f"{path}_ms"][q] for x in per])
        for path in ("gather", "graph"):
            figures[f"{path}_recall"] = median_spread([x[f"{path}_recall"] for x in per])
        rows.append(figures)
    out: dict[str, Any] = {"rows": rows}
    for path, name in (("exact", "scan"), ("gather", "gather")):
        per_repeat = [crossing(r["crossover"], path) for r in ok]
        out[f"{name}_p95_crossover_window"] = {
            "per_repeat": per_repeat,
            **(median_spread([c for c in per_repeat if c is not None]) or {}),
        }
    out["rule"] = (
        "per repeat, the window (the newest m entries) where the exact path's P95 meets the "
        "graph path's, linearly interpolated between measured sizes; median and range over "
        "repeats. The graph's cost depends on the candidates' share of the store, not on "
        "where their rows lie, so one graph column serves both exact paths"
    )
    return out


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from hearthwatch.tuning.environment import versions as base

    out: dict[str, Any] = {**base(), "numpy": np.__version__}
    for dist in ("faiss-cpu", "usearch", "numkong", "sqlite-vec", "hnswlib"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    import sqlite3

    out["sqlite (venv python)"] = sqlite3.sqlite_version
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def decide(results: dict[str, Any], crossover: dict[str, Any] | None, sla: float) -> dict[str, Any]:
    """Applies the stated criteria to the measured summaries."""
    criteria = {
        "unfiltered_p95_le_sla": f"unfiltered P95 ≤ {sla} ms in every repeat",
        "filtered_p95_le_sla": f"time-filtered P95 ≤ {sla} ms in every repeat",
        "filtered_exact": "time-filtered recall@10 ≥ 0.999 and nothing from outside the horizon",
        "unfiltered_recall": "unfiltered recall@10 ≥ 0.95",
        "removal_without_rebuild": "removes entries in place, removed keys never returned",
    }
    table = {}
    for name, r in results.items():
        if "error" in r:
            table[name] = {"error": r["error"]}
            continue
        u, f, d = r["unfiltered"], r["filtered"], r["delete"]
        table[name] = {
            "unfiltered_p95_le_sla": u["meets_sla_every_repeat"],
            "filtered_p95_le_sla": f["meets_sla_every_repeat"],
            "filtered_exact": f["recall"]["min"] >= 0.999 and f["outside_horizon"] == 0,
            "unfiltered_recall": u["recall"]["min"] >= 0.95,
            "removal_without_rebuild": d["supported"] and d["removed_keys_returned_after"] == 0,
        }
    passing = [n for n, t in table.items() if "error" not in t and all(t.values())]

    def worst_p95(name: str) -> float:
        return max(results[name][q]["p95_ms"]["max"] for q in ("unfiltered", "filtered"))

    chosen = min(passing, key=worst_p95) if passing else None
    failures = {
        n: [c for c, ok in t.items() if not ok] if "error" not in t else ["did not run"]
        for n, t in table.items()
        if n not in passing
    }
    reason = "no candidate met every criterion"
    if chosen:
        v = results[chosen]
        reason = (
            f"{chosen} meets every criterion"
            + (
                " (the only candidate that does)"
                if len(passing) == 1
                else f" (as do {', '.join(n for n in passing if n != chosen)}) and has the lowest "
                "worst-repeat P95 over both query kinds (the tie-break)"
            )
            + ": unfiltered P95 "
            f"{v['unfiltered']['p95_ms']['max']:.2f} ms and time-filtered P95 "
            f"{v['filtered']['p95_ms']['max']:.2f} ms in its worst repeat, filtered recall@10 "
            f"{v['filtered']['recall']['min']:.3f}, unfiltered recall@10 "
            f"{v['unfiltered']['recall']['min']:.3f}, removal in place at "
            f"{v['delete']['per_key_us']['value']:.1f} µs a key."
            + (
                " The others fail: "
                + "; ".join(f"{n}: {', '.join(f)}" for n, f in failures.items())
                if failures
                else ""
            )
            + ". Worst-repeat P95 (unfiltered / filtered, ms) and CPU ms per unfiltered query: "
            + "; ".join(
                f"{n} {r['unfiltered']['p95_ms']['max']:.2f} / {r['filtered']['p95_ms']['max']:.2f}"
                f", {r['unfiltered']['cpu_ms_per_query']['value']:.2f}"
                for n, r in results.items()
                if "error" not in r and r["unfiltered"]["p95_ms"] and r["filtered"]["p95_ms"]
            )
        )
    return {
        "criteria": criteria,
        "tie_break": "among candidates meeting every criterion, the lowest worst-repeat P95 "
        "over unfiltered and filtered queries",
        "table": table,
        "passing": passing,
        "failures": failures,
        "packaging": PACKAGING,
        "chosen": chosen,
        "reason": reason,
        "crossover_windows": crossover
        and {
            "scan": crossover["scan_p95_crossover_window"],
            "gather": crossover["gather_p95_crossover_window"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=5000)
    ap.add_argument("--views", type=int, default=20)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--span-days", type=float, default=7.0)
    ap.add_argument("--visit-s", type=float, default=600.0)
    ap.add_argument("--horizon-share", type=float, default=0.02)
    ap.add_argument("--delete-share", type=float, default=0.01)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--cut-queries", type=int, default=300)
    ap.add_argument("--delete-queries", type=int, default=200)
    ap.add_argument("--crossover-queries", type=int, default=200)
    ap.add_argument("--adds", type=int, default=200)
    ap.add_argument("--sla-ms", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--worker-timeout", type=float, default=1200)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.out)
        return 0

    from datetime import UTC, datetime

    from hearthwatch.tuning.environment import record_header, write_record
    from hearthwatch.tuning.method import Sanity

    names = [n for n in args.candidates.split(",") if n]
    started = datetime.now(UTC)
    directory = Path(tempfile.mkdtemp(prefix="vector_bench_"))
    try:
        t0 = time.perf_counter()
        data = make_data(args, directory)
        print(f"data: {data['n']} × {data['dim']} in {time.perf_counter() - t0:.1f} s", flush=True)
        sqlite_py, sqlite_note = sqlite_python()
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        orders = []
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            if repeat % 2:
                order.reverse()
            orders.append(order)
            for name in order:
                if name == "sqlite_vec" and sqlite_py is None:
                    runs[name].append({"candidate": name, "error": sqlite_note})
                    continue
                t1 = time.perf_counter()
                r = run_worker(name, directory, repeat, args, sqlite_py)
                runs[name].append(r)
                brief = (
                    "error"
                    if "error" in r
                    else (
                        f"build {r['build_s']:.1f}s mem {r['memory_mb']:.0f}MB "
                        f"unf p95 {np.percentile(r['latencies']['unfiltered'], 95):.2f}ms "
                        f"r={r['unfiltered']['recall']:.3f} "
                        f"filt p95 {np.percentile(r['latencies']['filtered'], 95):.2f}ms "
                        f"r={r['filtered']['recall']:.3f}"
                    )
                )
                print(
                    f"repeat {repeat} {name}: {brief} ({time.perf_counter() - t1:.0f} s)",
                    flush=True,
                )
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    results = {n: summarise(runs[n], args.sla_ms) for n in names}
    crossover = crossover_summary(runs.get("vector_index", []))
    sanity = Sanity()
    moved: list[str] = []  # the method's "say so": flagged, the comparison is side by side
    for name, r in results.items():
        if "error" in r:
            sanity.check(f"{name}: ran", False, str(r["error"]))
            continue
        for label in ("unfiltered", "filtered"):
            fig = r[label]
            rec = fig["recall"]
            sanity.check(
                f"{name} {label}: 0 ≤ recall ≤ 1", 0 <= rec["min"] <= rec["max"] <= 1, f"{rec}"
            )
            lats = np.concatenate([x["latencies"][label] for x in runs[name] if "error" not in x])
            sanity.check(
                f"{name} {label}: latencies > 0",
                bool(np.all(lats > 0)),
                f"min {lats.min():.4f} ms over {len(lats)}",
            )
            n_min = min(fig["samples_per_repeat"])
            sanity.check(
                f"{name} {label}: samples support the percentiles reported",
                n_min >= (1000 if fig["p99_ms"] else 200),
                f"{n_min} samples a repeat, P99 {'reported' if fig['p99_ms'] else 'withheld'}",
            )
        sanity.check(
            f"{name}: nothing returned from outside the horizon",
            r["filtered"]["outside_horizon"] == 0,
            f"{r['filtered']['outside_horizon']} entries",
        )
        if r["delete"]["supported"]:
            sanity.check(
                f"{name}: removed keys never returned",
                r["delete"]["removed_keys_returned_after"] == 0,
                f"{r['delete']['removed_keys_returned_after']} returned",
            )
        for label in ("unfiltered", "filtered"):
            p95 = [
                float(np.percentile(x["latencies"][label], 95))
                for x in runs[name]
                if "error" not in x
            ]
            if len(p95) >= 2 and (max(p95) - min(p95)) > 0.10 * max(p95):
                moved.append(
                    f"{name} {label} P95 moved {(max(p95) - min(p95)) / max(p95):.0%} "
                    f"between repeats: {[round(v, 3) for v in p95]} ms"
                )
    for name in ("numpy_f32", "faiss_flat"):
        if name in results and "error" not in results[name]:
            r = results[name]
            sanity.check(
                f"{name} (exact) agrees with the ground truth",
                r["unfiltered"]["recall"]["min"] >= 0.999
                and r["filtered"]["recall"]["min"] >= 0.999,
                f"recall {r['unfiltered']['recall']} / {r['filtered']['recall']}",
            )
    ratios = {}
    if "vector_index" in results and "numpy_f32" in results:
        a = [
            np.percentile(x["latencies"]["unfiltered"], 95)
            for x in runs["numpy_f32"]
            if "error" not in x
        ]
        b = [
            np.percentile(x["latencies"]["unfiltered"], 95)
            for x in runs["vector_index"]
            if "error" not in x
        ]
        if a and b:
            ratios["numpy_f32_over_vector_index_unfiltered_p95"] = median_spread(
                [x / y for x, y in zip(a, b, strict=False)]
            )

    header = record_header()
    record = {
        "benchmark": "vector_bench",
        "timestamp": started.isoformat(),
        **header,
        "device": f"cpu ({cpu_model()}, {os.cpu_count()} cores)",
        "versions": versions(),
        "method": {
            "repeats": args.repeats,
            "orders": orders,
            "threads": args.threads,
            "queries": args.queries,
            "warmup_queries": {"unfiltered": args.warmup, "filtered": max(args.warmup // 4, 10)},
            "cut_rule": f"a candidate whose warm-up median exceeds {args.sla_ms} ms is measured "
            f"on {args.cut_queries} queries (P50/P95 only)",
            "latency": "one search call, perf_counter_ns around it, serial (closed loop, one "
            "query at a time: the index is a library call, not a server)",
            "memory": "RssAnon added by the build, measured in the candidate's own process "
            "(the data file is memory-mapped and not counted)",
            "delete": f"the oldest {args.delete_share:.0%} of the store in one call, then "
            f"{args.delete_queries} unfiltered queries of the removed identities",
            "sqlite_vec_python": sqlite_note or "the venv's",
        },
        "parameters": {**vars(args), "results": str(args.results)},
        "data": data,
        "skipped": SKIPPED,
        "results": results,
        "crossover": crossover,
        "ratios": ratios,
        "points": {
            n: [
                {k2: v2 for k2, v2 in r.items() if k2 != "latencies"} | {"repeat": i}
                for i, r in enumerate(runs[n])
            ]
            for n in names
        },
        "sanity": {**sanity.as_dict(), "moved_more_than_10_percent_between_repeats": moved},
        "decision": decide(results, crossover, args.sla_ms),
    }
    write_record(record, args.results, "vector_bench_cpu")
    print(json.dumps(record["decision"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
