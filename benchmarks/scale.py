"""Scale benchmark: FAISS index types over synthetic 10k / 100k / 1M passage embeddings.

Indexes are built the way `hf_etrag.retrieval.index.PassageIndex` builds them
(`faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)` over L2-normalised float32 vectors),
but on raw synthetic vectors so no encoder model is needed. For each size it reports build time, peak
resident memory, on-disk size, ms/query in batches of 64 and recall@10 against exact search, with the
search knob (nprobe / efSearch / k_factor) tuned to the smallest value reaching the recall target.

    python benchmarks/scale.py --quick                      # 10k only, smoke test
    python benchmarks/scale.py --sizes 10000,100000,1000000 # full run
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass

import faiss
import numpy as np

K = 10
BATCH = 64
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Samples RSS in a thread while a build runs: `ru_maxrss` is a process-lifetime maximum, so it cannot
    attribute a peak to one build once an earlier, larger build has set it (faiss releases the GIL)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@dataclass
class Row:
    name: str
    knob: str
    build_s: float
    peak_delta_mb: float
    peak_abs_mb: float
    disk_mb: float
    ms_per_query: float
    recall: float


class Mixture:
    """Clustered Gaussian mixture whose within-cluster spread lies mostly in a shared low-rank subspace,
    like real sentence embeddings (low intrinsic dimension); pure isotropic noise in 384-d would make every
    neighbour equidistant and every ANN method look equally bad."""

    def __init__(self, dim: int, n_clusters: int = 1024, rank: int = 48, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.centers = rng.standard_normal((n_clusters, dim), dtype=np.float32) / math.sqrt(dim)
        self.basis = rng.standard_normal((rank, dim), dtype=np.float32) / math.sqrt(dim)
        # noise norms ~0.6 (low-rank) and ~0.2 (isotropic) against unit-norm centres ~1.4 apart
        self.low_scale, self.iso_scale = 0.6 / math.sqrt(rank), 0.2 / math.sqrt(dim)

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for s in range(0, n, chunk):  # chunked so temporaries stay ~150 MB at 1M x 384
            m = min(chunk, n - s)
            x = self.centers[rng.integers(len(self.centers), size=m)]
            x += (
                rng.standard_normal((m, self.basis.shape[0]), dtype=np.float32) @ self.basis
            ) * self.low_scale
            x += rng.standard_normal((m, self.dim), dtype=np.float32) * self.iso_scale
            x /= np.linalg.norm(x, axis=1, keepdims=True)  # cosine retrieval == inner product on unit vectors
            out[s : s + m] = x
        return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def ms_per_query(index: faiss.Index, xq: np.ndarray, reps: int = 5) -> float:
    index.search(xq[:BATCH], K)  # warm-up: first call pays page faults / lazy allocations
    times = []
    for r in range(reps):
        b = xq[(r * BATCH) % (len(xq) - BATCH) :][:BATCH]
        t0 = time.perf_counter()
        index.search(b, K)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / BATCH * 1e3


def disk_mb(index: faiss.Index) -> float:
    fd, path = tempfile.mkstemp(suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(index, path)
        return os.path.getsize(path) / 2**20
    finally:
        os.remove(path)


def apply(ps: faiss.ParameterSpace, index: faiss.Index, knob: dict) -> None:
    for key, val in knob.items():
        if key == "k_factor":  # ParameterSpace does not reach IndexRefineFlat's own knob
            faiss.downcast_index(index).k_factor = val
        else:
            ps.set_index_parameter(index, key, val)


def tune(index: faiss.Index, xq: np.ndarray, truth: np.ndarray, knobs: list[dict], target: float):
    """Smallest knob setting (knobs are ordered cheapest first) reaching `target`, else the most accurate."""
    ps = faiss.ParameterSpace()  # sets nprobe / efSearch / k_factor through IVF, HNSW and refine wrappers
    best: tuple[float, dict] = (-1.0, {})
    for knob in knobs:
        apply(ps, index, knob)
        r = recall_at_k(index.search(xq, K)[1], truth)
        if r > best[0]:
            best = (r, knob)
        if r >= target:
            return r, knob
    apply(ps, index, best[1])
    return best


def configs(n: int, nlist: int) -> list[tuple[str, str, list[dict]]]:
    """(label, factory string, knobs to tune). `+RFlat` means wrap in IndexRefineFlat (exact re-ranking)."""
    probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= nlist]
    return [
        ("Flat", "Flat", [{}]),
        (f"IVF{nlist},Flat", f"IVF{nlist},Flat", [{"nprobe": p} for p in probes]),
        (f"IVF{nlist},SQfp16", f"IVF{nlist},SQfp16", [{"nprobe": p} for p in probes]),
        (f"IVF{nlist},PQ48", f"IVF{nlist},PQ48", [{"nprobe": p} for p in probes]),
        (
            f"IVF{nlist},PQ48+RFlat",
            f"IVF{nlist},PQ48",
            [{"nprobe": p, "k_factor": k} for p in probes for k in (2, 4, 8, 16)],
        ),
        ("HNSW32", "HNSW32", [{"efSearch": e} for e in (16, 32, 64, 128, 256, 512)]),
    ]


def build(factory: str, xb: np.ndarray, centroids: np.ndarray | None, assign: np.ndarray | None):
    """Returns (index, seconds spent training the encoder on a fixed-size sample, i.e. not scaling with N)."""
    index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    train_s = 0.0
    if centroids is not None:
        # Reuse the coarse k-means shared by all IVF variants: IndexIVF.train skips coarse training when the
        # quantizer already holds nlist centroids, and only trains the SQ/PQ encoder.
        faiss.extract_index_ivf(index).quantizer.add(centroids)
    if "PQ" in factory:  # polysemous training is single-threaded and slow, and unused by plain ADC search
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    if not index.is_trained:
        # encoders (SQ ranges, PQ codebooks) need few points; PQ k-means ran ~4x slower with 2 OpenMP threads
        # than with 1 on this shared 2-core box, so it is trained single-threaded
        threads, t0 = faiss.omp_get_max_threads(), time.perf_counter()
        faiss.omp_set_num_threads(1 if "PQ" in factory else threads)
        index.train(xb[: min(len(xb), 20_000)])
        faiss.omp_set_num_threads(threads)
        train_s = time.perf_counter() - t0
    if assign is None:
        index.add(xb)
    else:  # coarse assignment (1M x nlist inner products) computed once and shared by all IVF variants
        faiss.extract_index_ivf(index).add_core(len(xb), faiss.swig_ptr(xb), None, faiss.swig_ptr(assign))
    return index, train_s


def run_size(
    n: int, args: argparse.Namespace, mix: Mixture, prev: dict[str, tuple[int, float, float]]
) -> list[Row]:
    xb = mix.sample(n, seed=1)
    xq = mix.sample(args.queries, seed=2)  # fresh draws from the same mixture, not corpus members
    nlist = int(round(4 * math.sqrt(n)))
    rows: list[Row] = []
    truth: np.ndarray | None = None
    centroids, kmeans_s = None, 0.0
    assign: np.ndarray | None = None
    pq: tuple[faiss.Index, float, float] | None = None  # (index, build s, encoder-train s)
    for label, factory, knobs in configs(n, nlist):
        family = re.sub(r"IVF\d+", "IVF", label)
        if family in prev:  # extrapolate build time from the previous size
            pn, ps, fixed_s = prev[family]
            # HNSW ~N log N; IVF k-means and assignment ~N * nlist with nlist ~ sqrt(N), so ~N^1.5;
            # encoder training uses a fixed-size sample so it does not scale
            est = fixed_s + (ps - fixed_s) * (n / pn) ** (1.5 if "IVF" in label else 1.0)
            est *= math.log(n) / math.log(pn) if "HNSW" in label else 1.0
            left = args.budget_s - (time.perf_counter() - args.t_start)
            # sizes run smallest first, so the budget mostly goes to the largest; tuning adds ~20% to a build
            if est * 1.2 > left:
                print(f"  skip {label}: est. build {est:.0f}s > {left:.0f}s left of --budget-s", flush=True)
                continue
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            if "IVF" in factory and centroids is None and "+RFlat" not in label:
                # 16 points per centroid (faiss warns below 39): k-means over 39*4000 points alone would eat
                # minutes of the 1M budget on 2 cores
                sample = xb[np.random.default_rng(3).choice(n, size=min(n, 16 * nlist), replace=False)]
                km = faiss.Kmeans(xb.shape[1], nlist, niter=10, spherical=True, seed=1)
                km.train(sample)
                centroids = km.centroids
                del sample, km
                coarse = faiss.IndexFlatIP(xb.shape[1])
                coarse.add(centroids)
                assign = np.ascontiguousarray(coarse.search(xb, 1)[1].ravel(), dtype=np.int64)
                kmeans_s = time.perf_counter() - t0  # k-means + assignment, charged to every IVF row
                t0 = time.perf_counter()
            train_s = 0.0
            if label.endswith("+RFlat"):
                if pq is None:  # the PQ row was skipped, so there is nothing to wrap
                    continue
                # wrap the PQ index just measured rather than re-train and re-add it; charge its build too;
                # IndexRefineFlat keeps the raw vectors to re-rank PQ candidates exactly
                index = faiss.IndexRefineFlat(pq[0], faiss.swig_ptr(xb))
                build_s, train_s = time.perf_counter() - t0 + pq[1], pq[2]
            else:
                ivf = "IVF" in factory
                index, train_s = build(factory, xb, centroids if ivf else None, assign if ivf else None)
                # each IVF row is charged the shared k-means + assignment time, as if built alone
                build_s = time.perf_counter() - t0 + (kmeans_s if ivf else 0.0)
        if truth is None:  # Flat comes first: exact inner-product search is the ground truth
            truth = index.search(xq, K)[1]
        recall, knob = tune(index, xq, truth, knobs, args.target)
        knob_s = " ".join(f"{k}={v}" for k, v in knob.items())
        rows.append(
            Row(label, knob_s, build_s, (mem.peak - mem.start) / 2**20, mem.peak / 2**20,
                disk_mb(index), ms_per_query(index, xq), recall)
        )  # fmt: skip
        prev[family] = (n, build_s, train_s)
        r = rows[-1]  # printed as it lands, so a run cut by an outer timeout still leaves its numbers
        print(
            f"  done {label} {knob_s}: build {build_s:.1f}s, R@10 {r.recall:.3f}, {r.ms_per_query:.3f} ms/q",
            flush=True,
        )
        pq = (index, build_s, train_s) if label.endswith(",PQ48") else None
        del index
    return rows


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def print_table(n: int, rows: list[Row]) -> None:
    print(f"\n== {size_label(n)} passages ==")
    head = f"{'index':<24}{'knob':<22}{'build s':>9}{'peakΔ MB':>10}{'peak MB':>9}{'disk MB':>9}"
    print(head + f"{'ms/query':>10}{'R@10':>7}")
    for r in rows:
        print(
            f"{r.name:<24}{r.knob:<22}{r.build_s:>9.1f}{r.peak_delta_mb:>10.0f}{r.peak_abs_mb:>9.0f}"
            f"{r.disk_mb:>9.1f}{r.ms_per_query:>10.3f}{r.recall:>7.3f}"
        )
    print(f"(process peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


def headline(n: int, rows: list[Row], target: float) -> str:
    ok = [r for r in rows if r.recall >= target]
    if ok:
        b = min(ok, key=lambda r: r.ms_per_query)
        size = f"{b.disk_mb / 1024:.1f} GB" if b.disk_mb >= 1024 else f"{b.disk_mb:.0f} MB"
        return (
            f"{size_label(n)} passages: {b.name} {b.knob} recall@10={b.recall:.2f} at "
            f"{b.ms_per_query:.2f} ms/query (batch {BATCH}), {size} on disk".replace("  ", " ")
        )
    b = max(rows, key=lambda r: r.recall)
    return (
        f"{size_label(n)} passages: no configuration reached recall@10 >= {target}; best was {b.name} "
        f"{b.knob} at {b.recall:.3f} ({target - b.recall:.3f} short), {b.ms_per_query:.2f} ms/query"
    )


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2, help="faiss.omp_set_num_threads")
    p.add_argument("--target", type=float, default=0.95, help="recall@10 goal for tuning and the headline")
    p.add_argument(
        "--budget-s", type=float, default=600.0,
        help="wall-time budget for the whole run; an index type whose build, "
        "extrapolated from the previous size, would not fit in what is left is skipped (and says so)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="10k passages only (smoke test)")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.queries <= BATCH:
        # Latency is timed over batches drawn from the query set: it must hold more than one batch.
        parser.error(f"--queries must be greater than the search batch ({BATCH}); got {args.queries}.")
    faiss.omp_set_num_threads(args.threads)
    sizes = [10_000] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    mix = Mixture(args.dim)
    prev: dict[str, tuple[int, float, float]] = {}
    args.t_start = time.perf_counter()
    results: list[tuple[int, list[Row]]] = []
    for n in sizes:
        t0 = time.perf_counter()
        rows = run_size(n, args, mix, prev)
        print_table(n, rows)
        print(f"({size_label(n)} total {time.perf_counter() - t0:.0f}s wall)", flush=True)
        results.append((n, rows))
    print(headline(*results[-1], args.target))


if __name__ == "__main__":
    main()
