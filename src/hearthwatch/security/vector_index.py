"""An in-memory index of re-identification embeddings: "which stored embeddings seen within a
time horizon are most similar to this one", fast as the store grows.

Chosen by measurement (``bench/vector_bench.py``; the record in ``bench/results/`` says why):
every entry's unit-length float32 vector lives in one numpy matrix, in the order it was added,
and a `usearch <https://github.com/unum-cloud/usearch>`_ HNSW graph (inner product, the
library's preferred storage type for this CPU) sits beside it.

A search first selects the candidates, the live entries with ``since <= seen_at <= until`` and
a key not in ``exclude``, then:

- when they are few, it scores every one of them exactly: the answer is the exact top ``k``.
  Entries are kept in the order they were added, which for a live store is the order they
  were seen, so a time window is a run of rows: when the rows from its first candidate to its
  last number at most ``exact_max``, that slice is scanned (the non-candidates in it masked
  out); otherwise, when the candidates number at most ``gather_max``, they are gathered
  (copied) and scanned. Both limits are the crossovers the bench measured against the graph
  (P95 latency). Scans are row-wise dot products on the calling thread (:func:`_dots` says
  why not a threaded BLAS product);
- otherwise it asks the graph (on the calling thread) for enough nearest neighbours to hold
  ``k`` candidates at their share of the store, twice over, asking again for four times more
  if the filter left fewer, and scans exactly when even that is not enough. This answer is
  approximate (the bench records its recall@10).

Either way the similarities returned are exact: recomputed from the float32 matrix, so they
equal the dot product of the two normalised vectors, and the order is by similarity,
descending (equal ones by key). At most ``min(k, number of candidates)`` pairs come back.

Removal marks a row dead and removes its node from the graph (usearch reuses the slot); the
matrix is compacted (dead rows dropped, order kept) once dead rows outnumber live ones, which
never touches the graph: nothing is ever rebuilt.

Thread safety: every public method holds one :class:`threading.Lock` for its whole run
(validation and normalisation happen before it), so the methods are atomic with respect to
each other and a search sees either all of a concurrent ``add``/``remove`` or none of it.
Calls from any number of threads are safe; they run one at a time, each on its caller's thread
(a search costs about a millisecond at 100 000 entries, measured by the bench), except
``add_many``, whose graph insertion uses every core. Arrays passed in are copied; nothing
returned aliases the index's state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterable

import numpy as np
from usearch.index import Index as _HnswIndex

DEFAULT_EXACT_MAX = 20_000
"""Rows up to which a search scans a slice of the matrix exactly: where the scan's P95 met the
graph's in bench/vector_bench.py (1280-d, 100 000 entries, 2 cores: 22 000–26 800 rows over
three repeats, median 22 200), rounded down."""
DEFAULT_GATHER_MAX = 10_000
"""Scattered candidates up to which a search gathers and scans them exactly: the same
crossover for a gather (9 200–11 800 rows, median 10 300), rounded down."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_vecdot = getattr(np, "vecdot", None)  # numpy >= 2.0
_MIN_COMPACT = 1024  # dead rows tolerated before a compaction is worth its copy


class VectorIndex:
    """Keyed, time-stamped unit vectors with a cosine top-k search restricted to a time
    horizon; see the module docstring for the contract and the thread safety.

    ``dim`` is the vectors' length. Keywords: ``exact_max``, the most matrix rows a search
    scans as one slice, and ``gather_max``, the most scattered candidates it gathers, before it
    uses the graph; ``connectivity``, ``expansion_add`` and ``expansion_search``, the graph's
    HNSW parameters (M, efConstruction, efSearch).
    """

    def __init__(
        self,
        dim: int,
        *,
        exact_max: int = DEFAULT_EXACT_MAX,
        gather_max: int = DEFAULT_GATHER_MAX,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        for name, limit in (("exact_max", exact_max), ("gather_max", gather_max)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"{name} must be an int >= 0, got {limit!r}")
        self.dim = dim
        self.exact_max = exact_max
        self.gather_max = gather_max
        self._lock = threading.Lock()
        self._graph = _HnswIndex(
            ndim=dim,
            metric="ip",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        capacity = 64
        self._vectors = np.empty((capacity, dim), dtype=np.float32)
        self._seen = np.full(capacity, np.nan)  # NaN for dead and unused rows: never selected
        self._keys = np.zeros(capacity, dtype=np.int64)
        self._labels = np.zeros(capacity, dtype=np.uint64)
        self._rows = 0  # rows used (live and dead)
        self._row_of_key: dict[int, int] = {}
        self._row_of_label: dict[int, int] = {}
        self._next_label = 0

    # -- validation ------------------------------------------------------------------------

    def _unit(self, vector: np.ndarray, what: str) -> np.ndarray:
        try:
            array = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} is not a numeric array: {exc}") from exc
        if array.shape != (self.dim,):
            raise ValueError(f"{what} must have shape ({self.dim},), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what} has non-finite values")
        norm = float(np.linalg.norm(array))
        if not norm > 0 or not math.isfinite(norm):
            raise ValueError(f"{what} has no direction (norm {norm})")
        unit = (array / norm).astype(np.float32)
        if not np.all(np.isfinite(unit)):
            raise ValueError(f"{what} cannot be normalised in float32")
        return unit

    @staticmethod
    def _key(key: object) -> int:
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise ValueError(f"key must be an int, got {type(key).__name__}")
        value = int(key)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"key {value} does not fit in 64 bits")
        return value

    @staticmethod
    def _time(value: object, what: str, *, infinite: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{what} must be a number, got {type(value).__name__}")
        number = float(value)
        if math.isnan(number) or (not infinite and math.isinf(number)):
            raise ValueError(f"{what} must be {'a number' if infinite else 'finite'}, got {value}")
        return number

    # -- mutation --------------------------------------------------------------------------

    def add(self, key: int, vector: np.ndarray, seen_at: float) -> None:
        """Store ``vector`` (any non-zero norm; normalised here) under ``key``, seen at
        ``seen_at``; re-adding a key replaces its vector and time. ``ValueError`` for a
        vector of the wrong shape, non-finite or zero, a non-int key or a non-finite time."""
        self.add_many([key], np.asarray(vector)[None, ...], [seen_at])

    def add_many(self, keys: Iterable[int], vectors: np.ndarray, seen_at: Iterable[float]) -> None:
        """``add`` for many entries at once (loading a store at start-up): the graph inserts
        them on all cores. All are validated before any is stored; a key repeated in ``keys``
        keeps its last vector."""
        key_list = [self._key(k) for k in keys]
        times = [self._time(t, "seen_at", infinite=False) for t in seen_at]
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[0] != len(key_list) or len(times) != len(key_list):
            raise ValueError(
                f"need one vector of length {self.dim} and one seen_at per key: "
                f"{len(key_list)} keys, vectors {array.shape}, {len(times)} times"
            )
        units = [self._unit(v, f"vector for key {k}") for k, v in zip(key_list, array, strict=True)]
        if not key_list:
            return
        last = {k: i for i, k in enumerate(key_list)}  # a repeated key: its last entry wins
        order = sorted(last.values())
        with self._lock:
            self._drop(last.keys())
            self._maybe_compact()
            self._reserve(self._rows + len(order))
            start = self._rows
            labels = np.arange(self._next_label, self._next_label + len(order), dtype=np.uint64)
            self._next_label += len(order)
            rows = slice(start, start + len(order))
            self._vectors[rows] = np.stack([units[i] for i in order])
            self._seen[rows] = [times[i] for i in order]
            self._keys[rows] = [key_list[i] for i in order]
            self._labels[rows] = labels
            self._graph.add(labels, self._vectors[rows], threads=0 if len(order) > 1 else 1)
            for offset, i in enumerate(order):
                self._row_of_key[key_list[i]] = start + offset
                self._row_of_label[int(labels[offset])] = start + offset
            self._rows += len(order)

    def remove(self, keys: Iterable[int]) -> int:
        """Remove ``keys`` (missing ones are ignored); returns how many were present. A
        removed key is never returned again (unless added again)."""
        wanted = {self._key(k) for k in keys}
        with self._lock:
            removed = self._drop(wanted)
            self._maybe_compact()
            return removed

    def _drop(self, keys: Iterable[int]) -> int:
        rows = [self._row_of_key.pop(k) for k in keys if k in self._row_of_key]
        if not rows:
            return 0
        labels = self._labels[rows]
        self._seen[rows] = np.nan
        for label in labels.tolist():
            del self._row_of_label[label]
        self._graph.remove(labels, threads=1)
        return len(rows)

    def _reserve(self, rows: int) -> None:
        capacity = len(self._seen)
        if rows <= capacity:
            return
        capacity = max(rows, capacity + capacity // 2)
        vectors = np.empty((capacity, self.dim), dtype=np.float32)
        vectors[: self._rows] = self._vectors[: self._rows]
        seen = np.full(capacity, np.nan)
        seen[: self._rows] = self._seen[: self._rows]
        keys = np.zeros(capacity, dtype=np.int64)
        keys[: self._rows] = self._keys[: self._rows]
        labels = np.zeros(capacity, dtype=np.uint64)
        labels[: self._rows] = self._labels[: self._rows]
        self._vectors, self._seen, self._keys, self._labels = vectors, seen, keys, labels

    def _maybe_compact(self) -> None:
        live = len(self._row_of_key)
        dead = self._rows - live
        if dead < max(_MIN_COMPACT, live):
            return
        keep = np.flatnonzero(~np.isnan(self._seen[: self._rows]))
        n = len(keep)
        self._vectors[:n] = self._vectors[keep]
        self._seen[:n] = self._seen[keep]
        self._seen[n:] = np.nan
        self._keys[:n] = self._keys[keep]
        self._labels[:n] = self._labels[keep]
        self._rows = n
        self._row_of_key = dict(zip(self._keys[:n].tolist(), range(n), strict=True))
        self._row_of_label = dict(zip(self._labels[:n].tolist(), range(n), strict=True))

    # -- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._row_of_key)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        since: float,
        until: float = math.inf,
        exclude: Collection[int] = (),
    ) -> list[tuple[int, float]]:
        """Up to ``k`` ``(key, cosine similarity)`` pairs, most similar first (equal ones by key),
        among the entries with ``since <= seen_at <= until`` whose key is not in ``exclude``.
        ``ValueError`` for a query of the wrong shape, non-finite or zero, a negative ``k`` or
        a NaN bound."""
        query = self._unit(vector, "query")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ValueError(f"k must be an int >= 0, got {k!r}")
        lo_time = self._time(since, "since", infinite=True)
        hi_time = self._time(until, "until", infinite=True)
        excluded = {self._key(e) for e in exclude}
        if k == 0 or lo_time > hi_time:
            return []
        with self._lock:
            n = self._rows
            seen = self._seen[:n]
            if lo_time == -math.inf and hi_time == math.inf:
                mask = ~np.isnan(seen)
            else:
                mask = (seen >= lo_time) & (seen <= hi_time)  # NaN (dead) compares False
            for key in excluded:
                row = self._row_of_key.get(key)
                if row is not None:
                    mask[row] = False
            rows = np.flatnonzero(mask)
            if len(rows) == 0:
                return []
            if int(rows[-1] - rows[0]) + 1 <= self.exact_max:
                found = self._exact(query, mask, rows, k, gather=False)
            elif len(rows) <= self.gather_max:
                found = self._exact(query, mask, rows, k, gather=True)
            else:
                found = self._approximate(query, mask, rows, k)
            return [(int(self._keys[row]), float(sim)) for row, sim in found]

    def _exact(
        self, query: np.ndarray, mask: np.ndarray, rows: np.ndarray, k: int, *, gather: bool
    ) -> list[tuple[int, np.float32]]:
        """The exact top ``k`` of ``rows`` (the candidates; ``mask`` marks them): the slice
        from the first to the last scanned, or the candidates gathered."""
        if not gather:
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            scores = _dots(self._vectors[lo:hi], query)
            scores[~mask[lo:hi]] = -np.inf
            chosen = lo + self._top(scores, min(k, len(rows)))
        else:
            scores = _dots(self._vectors[rows], query)
            chosen = rows[self._top(scores, min(k, len(rows)))]
        return self._ranked(query, chosen)

    def _approximate(
        self, query: np.ndarray, mask: np.ndarray, rows: np.ndarray, k: int
    ) -> list[tuple[int, np.float32]]:
        live = len(self._row_of_key)
        want = min(k, len(rows))
        share = len(rows) / max(live, 1)
        fetch = min(live, max(2 * want, math.ceil(2 * want / share)))  # k at their share, twice
        limit = min(live, max(4 * fetch, 4096))
        while True:
            matches = self._graph.search(query, fetch, threads=1)
            found = [self._row_of_label.get(int(label), -1) for label in matches.keys]
            chosen = np.array([r for r in found if r >= 0 and mask[r]], dtype=np.int64)
            if len(chosen) >= want:
                return self._ranked(query, chosen)[:want]
            if fetch >= limit:
                span = int(rows[-1] - rows[0]) + 1  # the filter is too tight for the graph
                return self._exact(query, mask, rows, k, gather=span > 2 * len(rows))
            fetch = min(limit, fetch * 4)

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        if k >= len(scores):
            return np.arange(len(scores))
        return np.argpartition(-scores, k - 1)[:k]

    def _ranked(self, query: np.ndarray, rows: np.ndarray) -> list[tuple[int, np.float32]]:
        """``rows`` best first by their exact similarity (recomputed), ties by key."""
        sims = _dots(self._vectors[rows], query)
        order = np.lexsort((self._keys[rows], -sims))
        return [(int(rows[i]), sims[i]) for i in order]


def _dots(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Each row's dot product with ``query``, on the calling thread. Not ``rows @ query``: a
    multi-threaded BLAS splits that product across threads, and on a CPU busy with other work
    (inference beside it) one search then waits for a descheduled thread: measured on 2 cores,
    a 2 000-row product went from 0.2 ms to 8 ms while another process held the other core;
    row-wise products (one short BLAS dot or a SIMD loop each) stay on this thread."""
    if _vecdot is not None:
        return np.asarray(_vecdot(rows, query))
    return np.einsum("ij,j->i", rows, query)
