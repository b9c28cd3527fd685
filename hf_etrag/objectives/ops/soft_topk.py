"""Differentiable top-k instance selection (soft k-nearest neighbours) for ETRAG.

Pure tensor operators; no model, tokenizer or Trainer state is touched here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["soft_topk", "soft_select"]

# Floor for 1 - D_i before the log; see the comment in `soft_topk`.
_EPS = 1e-12


def soft_topk(scores: Tensor, k: int, temperature: float, exclude_mask: Tensor | None = None) -> Tensor:
    r"""Continuous relaxation of top-k selection by iterated softmax.

    Used by ETRAG to pick the $k$ memory instances closest to a query while keeping the
    selection differentiable with respect to the retriever scores:

    $$D_i = \operatorname{softmax}(s^{(i)} / \tau), \qquad
      s^{(i+1)} = s^{(i)} + \log(1 - D_i), \qquad i = 1, \dots, k,$$

    with $s^{(1)}$ the scores. Each $D_i$ is a distribution over the $N$ memory entries;
    the $\log(1 - D_i)$ term pushes mass already spent on earlier picks away from later
    ones, and as $\tau \to 0$ the $D_i$ become the one-hot vectors of the hard top-k, in
    order.

    Note: the reference N3 code divides the scores by $\tau$ once and adds the unscaled
    $\log(1-\alpha)$ to those scaled logits; here, as written above, the penalty is also
    divided by $\tau$. Both coincide at $\tau = 1$ and have the same $\tau \to 0$ limit.

    References:
    - Kohei Makino, Makoto Miwa, Yutaka Sasaki (2024). *End-to-End Trainable
      Retrieval-Augmented Generation for Relation Extraction*. arXiv:2406.03790.
    - Tobias Plötz, Stefan Roth (2018). *Neural Nearest Neighbors Networks*.
      NeurIPS 2018, arXiv:1810.12575.

    Args:
        scores: `(B, N)` floating scores, higher = closer (similarity or negative distance).
        k: number of selections, `1 <= k <= N`.
        temperature: softmax temperature $\tau > 0$.
        exclude_mask: optional `(B, N)` bool; `True` marks entries that must never be
            selected (e.g. the query's own instance in the memory). Each row must leave
            at least `k` candidates.

    Returns:
        `(B, k, N)` tensor `D`; every `D[b, i]` sums to 1 and excluded entries get 0.

    Example:
        >>> scores = torch.tensor([[0.1, 2.0, 1.0, -1.0]])
        >>> D = soft_topk(scores, k=2, temperature=1e-3)
        >>> D.argmax(-1)
        tensor([[1, 2]])
    """
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a 2-D (B, N) tensor, got {shape}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be floating point, got dtype {scores.dtype}")
    num_entries = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got k={k!r}")
    if k > num_entries:
        raise ValueError(f"k must be <= N (number of memory entries), got k={k} with N={num_entries}")
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or not (temperature > 0 and math.isfinite(temperature))
    ):
        raise ValueError(f"temperature must be a finite number > 0, got temperature={temperature!r}")

    s = scores
    if exclude_mask is not None:
        if exclude_mask.shape != scores.shape:
            raise ValueError(
                f"exclude_mask must have the same shape as scores {tuple(scores.shape)}, "
                f"got {tuple(exclude_mask.shape)}"
            )
        if exclude_mask.dtype != torch.bool:
            raise ValueError(f"exclude_mask must be a bool tensor, got dtype {exclude_mask.dtype}")
        if scores.shape[0] > 0:
            remaining = (~exclude_mask).sum(dim=-1)
            fewest = int(remaining.min())
            if fewest < k:
                row = int(remaining.argmin())
                raise ValueError(
                    f"cannot select k={k} entries: row {row} has only {fewest} candidates "
                    f"left after exclude_mask"
                )
        # -inf (not a large negative number) so excluded entries get exactly zero weight
        # at any temperature; softmax's backward sends them zero gradient, not NaN.
        s = s.masked_fill(exclude_mask.to(scores.device), float("-inf"))

    # Why the floor: at small temperature (or for a dominant score) D_i is exactly one-hot
    # in floating point, so 1 - D_i == 0. log(0) = -inf would still exclude the entry in
    # the forward pass, but its derivative 1/(1 - D_i) is inf, and inf * 0 in the
    # softmax backward yields NaN gradients. With the floor the penalty is log(eps) ~ -27.6,
    # which once divided by a small tau rules the entry out. (At tau ~ 1 with a score gap
    # beyond ~17, where float32 rounds D_i to 1, the exact penalty would be larger, so the
    # entry keeps some weight in later D_i; the relaxation is soft there anyway.) The floor
    # is raised to the dtype's smallest normal number where 1e-12 underflows (float16).
    eps = max(_EPS, torch.finfo(scores.dtype).tiny)
    selections = []
    for _ in range(k):
        d = torch.softmax(s / temperature, dim=-1)
        selections.append(d)
        s = s + torch.log(torch.clamp(1.0 - d, min=eps))
    return torch.stack(selections, dim=1)


def soft_select(D: Tensor, memory: Tensor) -> Tensor:
    r"""Soft retrieval of memory encodings: $r_i = \sum_n D_{i,n}\, m_n$, i.e. `r = D @ memory`.

    Gradients flow both to the selection weights (hence the query-side scores) and to the
    memory encodings.

    Args:
        D: `(B, k, N)` selection weights, e.g. from `soft_topk`.
        memory: `(B, N, H)` per-example memory or `(N, H)` memory shared by the batch.

    Returns:
        `(B, k, H)` soft-selected encodings.

    Example:
        >>> D = soft_topk(torch.randn(2, 5), k=3, temperature=0.1)
        >>> soft_select(D, torch.randn(5, 8)).shape
        torch.Size([2, 3, 8])
    """
    if D.dim() != 3:
        raise ValueError(f"D must be a 3-D (B, k, N) tensor, got shape {tuple(D.shape)}")
    batch, _, num_entries = D.shape
    if memory.dim() == 2:
        if memory.shape[0] != num_entries:
            raise ValueError(
                f"memory (N, H) has N={memory.shape[0]} but D has N={num_entries} (shape {tuple(D.shape)})"
            )
    elif memory.dim() == 3:
        if memory.shape[0] != batch or memory.shape[1] != num_entries:
            raise ValueError(
                f"memory (B, N, H) has shape {tuple(memory.shape)}, expected B={batch} and "
                f"N={num_entries} to match D {tuple(D.shape)}"
            )
    else:
        raise ValueError(f"memory must be (N, H) or (B, N, H), got shape {tuple(memory.shape)}")
    # matmul broadcasts a shared (N, H) memory over the batch without copying it B times.
    return torch.matmul(D, memory)
