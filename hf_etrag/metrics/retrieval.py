"""Retrieval metrics over ranked lists of passage ids: gold rank, recall@k (hit rate) and MRR.

A query's gold is either a single id (`int`, `str`, any hashable scalar) or a collection
(`list`, `tuple`, `set`, `frozenset`, NumPy array, ...) of acceptable ids, any one of which counts
as a hit. Because of this, a tuple is always read as a collection of ids, never as one id.
"""

from collections.abc import Hashable, Iterable, Sequence
from statistics import fmean

from hf_etrag.metrics._validation import check_k, check_same_length

Gold = Hashable | Iterable[Hashable]


def _gold_set(gold: Gold) -> frozenset[Hashable]:
    if isinstance(gold, str | bytes) or not isinstance(gold, Iterable):
        return frozenset([gold])
    return frozenset(gold)


def gold_rank(retrieved_ids: Sequence[Hashable], gold_id: Gold) -> int | None:
    """1-based position of the first retrieved id that is a gold id, or `None` if none is.

    ```python
    >>> gold_rank([7, 3, 9], 3)
    2
    >>> gold_rank([7, 3, 9], {9, 3})
    2
    ```
    """
    golds = _gold_set(gold_id)
    for position, doc_id in enumerate(retrieved_ids, start=1):
        if doc_id in golds:
            return position
    return None


def _gold_ranks(retrieved: Sequence[Sequence[Hashable]], gold: Sequence[Gold]) -> list[int | None]:
    check_same_length("retrieved", retrieved, "gold", gold)
    ranks: list[int | None] = []
    for index, (ids, gold_ids) in enumerate(zip(retrieved, gold, strict=True)):
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"retrieved[{index}] must be a sequence of ids, got {type(ids).__name__}")
        if gold_ids is None:
            raise TypeError(f"gold[{index}] must be an id or a collection of ids, got None")
        try:
            golds = _gold_set(gold_ids)
        except TypeError as error:
            raise TypeError(f"gold[{index}] must contain hashable ids: {error}") from None
        if not golds:
            raise ValueError(f"gold[{index}] is an empty collection; at least one gold id is needed")
        ranks.append(gold_rank(list(ids), golds))
    return ranks


def _recall(ranks: list[int | None], k: int) -> float:
    return fmean(rank is not None and rank <= k for rank in ranks) if ranks else 0.0


def _mrr(ranks: list[int | None], k: int | None) -> float:
    reciprocal = [0.0 if rank is None or (k is not None and rank > k) else 1.0 / rank for rank in ranks]
    return fmean(reciprocal) if reciprocal else 0.0


def recall_at_k(retrieved: Sequence[Sequence[Hashable]], gold: Sequence[Gold], k: int) -> float:
    """Fraction of queries with at least one gold id among the top `k` retrieved ids.

    This is the DPR-style "top-k retrieval accuracy" (a hit rate), not the fraction of all gold
    ids recovered. Raises `ValueError` for `k < 1` or mismatched lengths.
    """
    check_k(k)
    return _recall(_gold_ranks(retrieved, gold), k)


def mrr(retrieved: Sequence[Sequence[Hashable]], gold: Sequence[Gold], k: int | None = None) -> float:
    """Mean reciprocal rank of the first gold id; a miss (or a rank beyond `k`) contributes 0.

    `k=None` uses the whole retrieved list. Raises `ValueError` for `k < 1` or mismatched lengths.
    """
    if k is not None:
        check_k(k)
    return _mrr(_gold_ranks(retrieved, gold), k)


def retrieval_scores(
    retrieved: Sequence[Sequence[Hashable]],
    gold: Sequence[Gold],
    ks: Iterable[int] = (1, 5, 10),
) -> dict[str, float | None]:
    """All retrieval metrics in one pass over the data.

    Returns `{"recall@1": ..., "recall@5": ..., ..., "mrr": ..., "mean_gold_rank": ...}` where
    `mrr` uses the whole retrieved list and `mean_gold_rank` averages the 1-based rank over the
    queries whose gold was found (`None` if it was found for none). Empty inputs score 0.0.
    """
    ks = [check_k(k) for k in ks]
    ranks = _gold_ranks(retrieved, gold)
    scores: dict[str, float | None] = {f"recall@{k}": _recall(ranks, k) for k in ks}
    scores["mrr"] = _mrr(ranks, None)
    found = [rank for rank in ranks if rank is not None]
    scores["mean_gold_rank"] = fmean(found) if found else None
    return scores
