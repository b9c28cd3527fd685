"""Turning token ids into retrieval vectors: pooling, similarity and batched corpus encoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .token_store import TokenStore

PoolingMode = Literal["cls", "mean"]
Similarity = Literal["dot", "cosine"]

__all__ = [
    "PoolingMode",
    "Similarity",
    "pool",
    "encode_token_ids",
    "length_bucketed_batches",
    "to_device",
]


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Pool `(B, T, H)` token states into `(B, H)` vectors."""
    if mode == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def normalize_if_cosine(vectors: torch.Tensor, similarity: Similarity) -> torch.Tensor:
    # Cosine similarity is an inner product of unit vectors, so FAISS inner-product search stays exact.
    return F.normalize(vectors, dim=-1) if similarity == "cosine" else vectors


def length_bucketed_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length, so that padding (wasted encoder work) stays small."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def encode_token_ids(
    encode_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    store: TokenStore,
    pad_id: int,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
    description: str = "Encoding passages",
    indices: np.ndarray | None = None,
    copy_once: bool | None = None,
) -> np.ndarray:
    """Encode pre-tokenised sequences with `encode_fn(input_ids, attention_mask) -> (B, H)`.

    Batches are length-bucketed; the result is a float32 array in the order of `indices` (default: all).
    `copy_once` (default: on an accelerator) keeps the vectors on the device and copies them to the host in one
    transfer at the end, instead of one blocking copy per batch.
    """
    indices = np.arange(len(store)) if indices is None else np.asarray(indices)
    if len(indices) == 0:
        raise ValueError("Cannot encode an empty list of passages.")
    batches = length_bucketed_batches(store.lengths[indices], batch_size)
    device = torch.device(device)
    copy_once = device.type != "cpu" if copy_once is None else copy_once
    on_device: list[torch.Tensor] = []  # an accelerator's vectors stay there until one copy at the end
    output: np.ndarray | None = None
    for batch in tqdm(batches, desc=description, disable=not show_progress, leave=False):
        ids, mask = store.batch(indices[batch], pad_id)
        vectors = encode_fn(to_device(ids, device), to_device(mask, device)).float()
        if copy_once:
            on_device.append(vectors)
            continue
        if output is None:
            output = np.empty((len(indices), vectors.shape[1]), dtype=np.float32)
        output[batch] = vectors.numpy()
    if on_device:
        output = np.empty((len(indices), on_device[0].shape[1]), dtype=np.float32)
        output[np.concatenate(batches)] = torch.cat(on_device).cpu().numpy()
    return output


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host tensor to `device`; to an accelerator through pinned memory, without blocking the host."""
    device = torch.device(device)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
