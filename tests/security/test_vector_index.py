"""VectorIndex (hearthwatch.security.vector_index) against exact numpy search on clustered
embeddings: results, order and similarity values, the time horizon, exclusion, removal
(compaction included), validation, and adds, removals and searches from several threads.

Each behaviour is checked on each of the index's three paths, forced by its limits: the exact
slice scan, the exact gather and the HNSW graph. Sizes are small: the 100 000-entry figure is
bench/vector_bench.py's."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from hearthwatch.security.vector_index import VectorIndex

DIM = 48
PATHS = {
    "scan": {"exact_max": 10**9},
    "gather": {"exact_max": 0, "gather_max": 10**9},
    "graph": {"exact_max": 0, "gather_max": 0},
}


def clustered(
    identities: int, views: int, dim: int = DIM, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of identities (not normalised: the index normalises), their times and queries
    (fresh views of the same identities)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, dim)) + 0.8
    who = np.repeat(np.arange(identities), views)
    vectors = centres[who] + 0.5 * rng.standard_normal((len(who), dim))
    vectors *= rng.uniform(0.1, 10, (len(who), 1))  # any norm
    seen = np.sort(rng.uniform(0, 10_000, len(who)))
    queries = centres[rng.integers(0, identities, 40)] + 0.5 * rng.standard_normal((40, dim))
    return vectors, seen, queries


def unit32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def exact(
    vectors: np.ndarray,
    keys: np.ndarray,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The reference: every allowed entry scored, the best ``k``, most similar first."""
    sims = unit32(vectors) @ unit32(query)
    rows = np.arange(len(keys)) if allowed is None else np.flatnonzero(allowed)
    best = rows[np.argsort(-sims[rows], kind="stable")][:k]
    return [(int(keys[r]), float(sims[r])) for r in best]


def filled(path: str, vectors: np.ndarray, seen: np.ndarray) -> VectorIndex:
    index = VectorIndex(vectors.shape[1], **PATHS[path])
    for key, (vector, t) in enumerate(zip(vectors, seen, strict=True)):
        index.add(1000 + key, vector, float(t))
    return index


def assert_same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [key for key, _ in got] == [key for key, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-5)


def overlap(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> float:
    return len({k for k, _ in got} & {k for k, _ in want}) / max(len(want), 1)


def check_well_formed(got: list[tuple[int, float]], vectors: dict[int, np.ndarray], q: np.ndarray):
    """Best first, and every similarity is the exact cosine of that key's vector."""
    sims = [s for _, s in got]
    assert sims == sorted(sims, reverse=True)
    for key, sim in got:
        assert sim == pytest.approx(float(unit32(vectors[key]) @ unit32(q)), abs=1e-5)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return clustered(identities=60, views=12)


@pytest.fixture(scope="module", params=list(PATHS))
def full(request: pytest.FixtureRequest, data: tuple) -> tuple[str, VectorIndex]:
    vectors, seen, _ = data
    return request.param, filled(request.param, vectors, seen)


def test_matches_exact_search_on_clustered_data(full: tuple, data: tuple) -> None:
    path, index = full
    vectors, seen, queries = data
    keys = 1000 + np.arange(len(vectors))
    assert len(index) == len(vectors)
    recalls = []
    for q in queries:
        got = index.search(q, 10, since=-math.inf)
        want = exact(vectors, keys, q, 10)
        if path != "graph":
            assert_same(got, want)
        else:  # approximate: well formed, exact similarities, near-perfect recall here
            assert len(got) == 10
            check_well_formed(got, dict(zip(keys.tolist(), vectors, strict=True)), q)
            recalls.append(overlap(got, want))
    if recalls:
        assert np.mean(recalls) >= 0.95


def test_time_window_is_exact_and_inclusive(full: tuple, data: tuple) -> None:
    path, index = full
    vectors, seen, queries = data
    keys = 1000 + np.arange(len(vectors))
    since, until = float(seen[100]), float(seen[400])  # bounds equal to stored times
    allowed = (seen >= since) & (seen <= until)
    for q in queries[:15]:
        got = index.search(q, 10, since=since, until=until)
        want = exact(vectors, keys, q, 10, allowed)
        if path != "graph":
            assert_same(got, want)
        assert all(since <= seen[key - 1000] <= until for key, _ in got)
        assert overlap(got, want) >= 0.9
    assert {k for k, _ in index.search(vectors[100], 1, since=since, until=until)} == {1100}
    assert {k for k, _ in index.search(vectors[400], 1, since=since, until=until)} == {1400}


@pytest.mark.parametrize("path", PATHS)
def test_an_entry_outside_the_horizon_is_never_returned(path: str, data: tuple) -> None:
    vectors, seen, queries = data
    index = filled(path, vectors, seen)
    q = queries[0]
    index.add(1, q * 3.0, seen_at=-50.0)  # the perfect match, but too old
    index.add(2, q * 0.2, seen_at=20_000.0)  # the perfect match, but after `until`
    got = index.search(q, 10, since=0.0, until=10_000.0)
    assert len(got) == 10 and {1, 2}.isdisjoint(k for k, _ in got)
    assert index.search(q, 2, since=-100.0, until=10_000.0)[0] == (1, pytest.approx(1.0))
    best = index.search(q, 2, since=-math.inf)
    assert {k for k, _ in best} == {1, 2} and best[0][1] == pytest.approx(1.0, abs=1e-6)
    assert index.search(q, 5, since=30_000.0) == []
    assert index.search(q, 5, since=5.0, until=4.0) == []


@pytest.mark.parametrize("path", PATHS)
def test_exclude(path: str, data: tuple) -> None:
    vectors, seen, queries = data
    index = filled(path, vectors, seen)
    keys = 1000 + np.arange(len(vectors))
    first = [k for k, _ in index.search(queries[3], 5, since=-math.inf)]
    got = index.search(queries[3], 5, since=-math.inf, exclude=set(first[:3]) | {-7})
    assert set(first[:3]).isdisjoint(k for k, _ in got)
    assert len(got) == 5
    allowed = ~np.isin(keys, first[:3])
    assert overlap(got, exact(vectors, keys, queries[3], 5, allowed)) >= 0.8


@pytest.mark.parametrize("path", PATHS)
def test_removed_keys_are_never_returned(path: str, data: tuple) -> None:
    vectors, seen, queries = data
    index = filled(path, vectors, seen)
    keys = 1000 + np.arange(len(vectors))
    gone = keys[::3].tolist()
    assert index.remove(gone + [gone[0], 5, -1]) == len(gone)  # duplicates, missing: ignored
    assert index.remove(gone) == 0
    assert len(index) == len(vectors) - len(gone)
    alive = ~np.isin(keys, gone)
    for q in list(queries[:10]) + [vectors[0], vectors[3]]:  # queries aimed at removed ones
        got = index.search(q, 10, since=-math.inf)
        assert set(gone).isdisjoint(k for k, _ in got)
        assert overlap(got, exact(vectors, keys, q, 10, alive)) >= 0.9
        if path != "graph":
            assert_same(got, exact(vectors, keys, q, 10, alive))
    index.add(gone[0], vectors[0], float(seen[0]))  # back again
    assert index.search(vectors[0], 1, since=-math.inf)[0][0] == gone[0]


@pytest.mark.parametrize("path", PATHS)
def test_compaction_keeps_answers_exact(path: str) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 8))
    index = VectorIndex(8, **PATHS[path])
    index.add_many(range(3000), vectors, np.arange(3000.0))
    assert index.remove(range(0, 3000, 4)) == 750
    assert index.remove(range(1, 3000, 4)) == 750  # half dead: compacted here
    assert index.remove(range(2, 3000, 4)) == 750
    assert len(index) == 750
    keys = np.arange(3000)
    alive = keys % 4 == 3
    for q in rng.standard_normal((10, 8)):
        got = index.search(q, 5, since=-math.inf)
        assert all(k % 4 == 3 for k, _ in got)
        assert overlap(got, exact(vectors, keys, q, 5, alive)) >= 0.8
        window = alive & (keys >= 1000) & (keys <= 1500)
        got = index.search(q, 5, since=1000, until=1500)
        want = exact(vectors, keys, q, 5, window)
        if path != "graph":
            assert_same(got, want)
        else:
            assert overlap(got, want) >= 0.8 and all(1000 <= k <= 1500 for k, _ in got)
    index.add_many(range(3000, 3100), rng.standard_normal((100, 8)), np.full(100, 5000.0))
    assert len(index) == 850
    assert all(k >= 3000 for k, _ in index.search(q, 200, since=4000.0))


@pytest.mark.parametrize("path", PATHS)
def test_a_window_far_from_the_query_still_gets_k_answers(path: str) -> None:
    """The query's neighbours all lie outside the window: the graph's first answer holds no
    candidate, so it must ask again (or scan) rather than return fewer than k."""
    rng = np.random.default_rng(5)
    near = np.eye(16)[0] + 0.1 * rng.standard_normal((400, 16))
    far = np.eye(16)[1] + 0.1 * rng.standard_normal((60, 16))
    vectors = np.vstack([near, far])
    seen = np.concatenate([np.arange(400.0), 1000 + np.arange(60.0)])
    index = VectorIndex(16, **PATHS[path])
    index.add_many(range(460), vectors, seen)
    keys = np.arange(460)
    got = index.search(np.eye(16)[0], 10, since=1000.0)
    assert_same(got, exact(vectors, keys, np.eye(16)[0], 10, seen >= 1000))


def test_scattered_windows(data: tuple) -> None:
    """Entries added out of time order: a window's rows are scattered, and every path still
    answers from the window only (exactly, on the exact paths)."""
    vectors, seen, queries = data
    order = np.random.default_rng(9).permutation(len(vectors))
    keys = 1000 + np.arange(len(vectors))
    allowed = (seen >= seen[300]) & (seen <= seen[360])
    for path in PATHS:
        index = VectorIndex(DIM, **PATHS[path])
        index.add_many(keys[order], vectors[order], seen[order])
        for q in queries[:10]:
            got = index.search(q, 10, since=float(seen[300]), until=float(seen[360]))
            want = exact(vectors, keys, q, 10, allowed)
            if path != "graph":
                assert_same(got, want)
            assert all(allowed[k - 1000] for k, _ in got) and overlap(got, want) >= 0.8


def test_readding_a_key_replaces_it() -> None:
    index = VectorIndex(4)
    index.add(7, np.array([1.0, 0, 0, 0]), 10.0)
    index.add(7, np.array([0, 2.0, 0, 0]), 20.0)
    assert len(index) == 1
    assert index.search(np.array([0, 1.0, 0, 0]), 3, since=15.0) == [(7, pytest.approx(1.0))]
    assert index.search(np.array([1.0, 0, 0, 0]), 3, since=0.0, until=15.0) == []
    index.add_many([8, 8], np.eye(4)[:2], [1.0, 2.0])  # a repeated key: the last one wins
    assert index.search(np.eye(4)[1], 3, since=0.0, until=5.0) == [(8, pytest.approx(1.0))]


def test_small_requests() -> None:
    index = VectorIndex(3)
    assert index.search(np.ones(3), 5, since=-math.inf) == []
    index.add(1, np.array([1.0, 0, 0]), 1.0)
    index.add(2, np.array([0.6, 0.8, 0]), 2.0)
    assert index.search(np.array([1.0, 0, 0]), 0, since=-math.inf) == []
    got = index.search(np.array([3.0, 0, 0]), 10, since=-math.inf)  # k above the store
    assert got == [(1, pytest.approx(1.0)), (2, pytest.approx(0.6))]


@pytest.mark.parametrize(
    "vector",
    [
        np.ones(5),
        np.ones((1, 4)),
        np.ones((4, 1)),
        np.array([1.0, np.nan, 0, 0]),
        np.array([1.0, np.inf, 0, 0]),
        np.zeros(4),
        np.array(["a", "b", "c", "d"]),
    ],
    ids=["long", "row", "column", "nan", "inf", "zero", "text"],
)
def test_bad_vectors_are_rejected(vector: np.ndarray) -> None:
    index = VectorIndex(4)
    with pytest.raises(ValueError):
        index.add(1, vector, 1.0)
    with pytest.raises(ValueError):
        index.search(vector, 3, since=0.0)
    assert len(index) == 0


def test_bad_arguments_are_rejected() -> None:
    index = VectorIndex(4)
    good = np.ones(4)
    for key in ("1", 1.0, True, None, 2**64):
        with pytest.raises(ValueError):
            index.add(key, good, 1.0)  # type: ignore[arg-type]
    for seen_at in (math.nan, math.inf, -math.inf, "now", None):
        with pytest.raises(ValueError):
            index.add(1, good, seen_at)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index.add_many([1, 2], np.ones((3, 4)), [1.0, 2.0])  # counts differ
    with pytest.raises(ValueError):  # one bad vector: nothing of the batch is stored
        index.add_many([1, 2], np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]]), [1.0, 2.0])
    assert len(index) == 0
    index.add(np.int64(3), good.astype(np.float16), np.float32(1.5))  # numpy scalars are fine
    for kwargs in ({"since": math.nan}, {"since": 0.0, "until": math.nan}):
        with pytest.raises(ValueError):
            index.search(good, 3, **kwargs)
    for k in (-1, 2.5, True):
        with pytest.raises(ValueError):
            index.search(good, k, since=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index.search(good, 3, since=0.0, exclude=["x"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        VectorIndex(0)
    with pytest.raises(ValueError):
        VectorIndex(4, exact_max=-1)
    with pytest.raises(ValueError):
        VectorIndex(4, gather_max=1.5)  # type: ignore[arg-type]
    assert index.search(good, 3, since=0.0) == [(3, pytest.approx(1.0))]


@pytest.mark.parametrize("path", PATHS)
def test_concurrent_adds_removals_and_searches(path: str) -> None:
    rng = np.random.default_rng(11)
    writers, per_writer, dim = 4, 150, 16
    vectors = rng.standard_normal((writers * per_writer, dim))
    index = VectorIndex(dim, **PATHS[path])
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(writers + 2)

    def writer(w: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                key = w * per_writer + i
                index.add(key, vectors[key], float(key))
                if i % 10 == 9:  # retention: drop this writer's previous tenth
                    index.remove([key - 9 + j for j in range(0, 10, 2)])
        except BaseException as exc:
            errors.append(exc)

    def reader(seed: int) -> None:
        mine = np.random.default_rng(seed)  # a Generator is not to be shared between threads
        try:
            start.wait()
            while not done.is_set():
                q = mine.standard_normal(dim)
                since = float(mine.uniform(0, 600))
                got = index.search(q, 5, since=since, until=since + 100)
                sims = [s for _, s in got]
                assert sims == sorted(sims, reverse=True)
                assert all(since <= k <= since + 100 for k, _ in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors
    keys = np.arange(writers * per_writer)
    alive = ~((keys % per_writer) % 10 % 2 == 0)  # the even tenths' members were removed
    assert len(index) == int(alive.sum())
    for q in rng.standard_normal((5, dim)):
        got = index.search(q, 5, since=-math.inf)
        assert all(alive[k] for k, _ in got)
        want = exact(vectors, keys, q, 5, alive)
        if path != "graph":
            assert_same(got, want)
        else:
            assert overlap(got, want) >= 0.8
