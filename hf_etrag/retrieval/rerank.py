"""Re-rank the top-L of a stale index with the current document encoder.

This is one of the "efficient retriever fine-tuning" options of Atlas (Izacard et al. 2023, arXiv 2208.03299).

While the document encoder trains, the FAISS index holds embeddings from an older encoder. A full refresh
re-encodes the whole corpus; Atlas's cheaper option retrieves the top-L (L >= K) from the stale index,
re-encodes only those L passages with the current encoder and keeps the best K by the fresh scores. The
refresh can then be rare: the stale index only has to get the right passages into its top-L, not its top-K.

The re-encoding runs without gradient and with dropout off (it ranks, like a refresh); the kept passages
get their gradient as before, from `EtragModel.document_vectors` when `train_doc_encoder` is on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .encoding import length_bucketed_batches
from .token_store import TokenStore

__all__ = ["rerank_candidates"]


@torch.no_grad()
def rerank_candidates(
    encode_passages: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    store: TokenStore,
    pad_id: int,
    query_vectors: torch.Tensor,
    candidates: torch.Tensor,
    n_docs: int,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the `n_docs` best of each query's candidates by fresh inner product with its query vector.

    Args:
        encode_passages: `(input_ids, attention_mask) -> (N, H)` passage vectors from the current encoder
            (pooled and normalised as the index expects); called in whatever mode the caller set.
        store: the corpus's retriever token ids.
        pad_id: the retriever's padding id.
        query_vectors: `(B, H)` current query vectors.
        candidates: `(B, L)` corpus rows from the stale index, `L >= n_docs`.
        n_docs: how many to keep (K).
        batch_size: passages per encoder call; a passage shared by several queries is encoded once.

    Returns:
        `(B, K)` corpus rows sorted by fresh score (best first) and their `(B, K, H)` fresh vectors.
    """
    if candidates.shape[1] < n_docs:
        raise ValueError(
            f"Re-ranking keeps n_docs={n_docs} passages but got only {candidates.shape[1]} candidates per query; "
            "retrieve at least `n_docs` candidates (`rerank_top_l` >= `n_docs`)."
        )
    device = query_vectors.device
    unique, inverse = torch.unique(candidates.cpu(), return_inverse=True)
    rows = unique.numpy()
    fresh: torch.Tensor | None = None
    for batch in length_bucketed_batches(store.lengths[rows], batch_size):
        ids, mask = store.batch(rows[batch], pad_id)
        vectors = encode_passages(ids.to(device), mask.to(device))
        if fresh is None:
            fresh = vectors.new_empty((len(rows), vectors.shape[-1]))
        fresh[torch.from_numpy(batch).to(device)] = vectors
    candidate_vectors = fresh[inverse.to(device)].to(query_vectors.dtype)  # (B, L, H)
    scores = torch.einsum("bh,blh->bl", query_vectors.detach(), candidate_vectors)
    top = scores.topk(n_docs, dim=1).indices
    kept_vectors = candidate_vectors.gather(1, top.unsqueeze(-1).expand(-1, -1, candidate_vectors.shape[-1]))
    return candidates.to(device).gather(1, top), kept_vectors
