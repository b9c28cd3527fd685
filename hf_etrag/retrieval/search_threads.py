"""How many threads a FAISS search inside the training step should use.

The `faiss-cpu` wheel bundles its own OpenMP runtime, separate from torch's. Right after a torch operation,
torch's OpenMP threads are still spin-waiting for more work, so a multi-threaded FAISS search must wait for
time slices on the same cores: on 2 CPU cores a flat search of 8 queries over 2,067 passages took ~28 ms
with FAISS's default threads against ~0.3 ms on one thread (measured while profiling
`benchmarks/train_step_vs_hf_rag.py`; without a torch op just before, both take well under a millisecond).
A search inside the training step always follows the query encoder's forward pass, so small searches run
on one thread; large ones (evaluation batches, million-passage corpora) keep FAISS's threads, where the
parallel speed-up outweighs the wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss

__all__ = ["SINGLE_THREAD_SEARCH_WORK", "faiss_threads_for"]

# Multiply-adds (queries x passages x dim) below which one thread finishes before other threads would even
# be scheduled: 2**26 is ~10 ms of single-threaded SIMD inner products, under the ~28 ms wait measured above.
SINGLE_THREAD_SEARCH_WORK = 2**26


@contextmanager
def faiss_threads_for(work: int) -> Iterator[None]:
    """Run the enclosed FAISS call on one OpenMP thread when `work` is below [`SINGLE_THREAD_SEARCH_WORK`],
    restoring FAISS's thread count afterwards (it is process-global)."""
    if work >= SINGLE_THREAD_SEARCH_WORK:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
