"""Encoding the corpus across processes: each process encodes one contiguous shard, and every process ends
with all embeddings in corpus order (so every process builds the same FAISS index).

Used by [`hf_etrag.training.callbacks.refresh_index`] under `accelerate launch` / `torchrun` (DDP, DeepSpeed ZeRO-2,
FSDP2). Outside a multi-process job everything here reduces to the single-process path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .encoding import encode_token_ids
from .token_store import TokenStore

__all__ = ["process_rank_and_count", "shard_bounds", "unwrap_for_encoding", "encode_corpus_sharded"]


def process_rank_and_count() -> tuple[int, int]:
    """`(process index, number of processes)` of the running job; `(0, 1)` outside one.

    A job exists once `torch.distributed` is initialised (accelerate's `PartialState` does it at launch). We
    do not create a `PartialState` ourselves before that: it would fix the device before the Trainer does.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def shard_bounds(n_rows: int, n_shards: int) -> np.ndarray:
    """`n_shards + 1` boundaries of contiguous shards whose sizes differ by at most one row
    (shard `r` is `[bounds[r], bounds[r + 1])`; with fewer rows than shards some shards are empty)."""
    if n_shards < 1:
        raise ValueError(f"`n_shards` must be >= 1; got {n_shards}.")
    sizes = np.full(n_shards, n_rows // n_shards, dtype=np.int64)
    sizes[: n_rows % n_shards] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def unwrap_for_encoding(model: Any) -> Any:
    """The `EtragModel` inside a DDP / DeepSpeed / compiled wrapper, ready to encode outside `forward`.

    FSDP shards parameters, so calling `encode_passages` (not `forward`) needs them gathered first: FSDP2
    (`fully_shard`) does that once `encode_passages` is registered as a forward method; FSDP1's wrapper
    offers no such hook, so it is refused with the fix.
    """
    from accelerate.utils import extract_model_from_parallel

    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed support
        FullyShardedDataParallel = ()  # noqa: N806
    if isinstance(model, FullyShardedDataParallel):
        raise ValueError(
            "Index refresh encodes the corpus outside `forward`, which FSDP1 (`fsdp_version: 1`) cannot gather "
            "parameters for; use FSDP2: `fsdp_version: 2` in the accelerate config (see "
            "recipes/accelerate/fsdp.yaml), or DDP / DeepSpeed ZeRO-2."
        )
    model = extract_model_from_parallel(model, keep_torch_compile=False)
    try:
        from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method
    except ImportError:
        return model
    if isinstance(model, FSDPModule) and not getattr(model, "_etrag_encode_registered", False):
        # All-gathers the root's sharded parameters around the call, as for `forward` (transformers does the
        # same for `generate`); the wrapped layers gather their own through their hooks.
        register_fsdp_forward_method(model, "encode_passages")
        model._etrag_encode_registered = True
    return model


def encode_corpus_sharded(
    encode_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    store: TokenStore,
    pad_id: int,
    dim: int,
    batch_size: int,
    device: torch.device,
    show_progress: bool = False,
    description: str = "Encoding passages",
) -> tuple[np.ndarray, int]:
    """Encode all of `store` with the work split across processes; returns `(embeddings, rows encoded here)`.

    Every process must call this (it ends in a collective). Shards are contiguous, the gathered blocks are
    concatenated in process order, so the result is in corpus order and byte-identical on every process.
    Uneven shards are padded to the largest before `all_gather` and trimmed after. `dim` is the vector size,
    needed by a process whose shard is empty.
    """
    rank, world = process_rank_and_count()
    if world == 1:
        vectors = encode_token_ids(
            encode_fn, store, pad_id, batch_size, device, show_progress=show_progress, description=description
        )
        return vectors, len(store)
    from accelerate.utils import gather

    bounds = shard_bounds(len(store), world)
    start, stop = int(bounds[rank]), int(bounds[rank + 1])
    local = np.zeros((0, dim), dtype=np.float32)
    if stop > start:
        local = encode_token_ids(
            encode_fn,
            store,
            pad_id,
            batch_size,
            device,
            show_progress=show_progress,
            description=f"{description} (shard {rank + 1}/{world})",
            indices=np.arange(start, stop),
        )
    from accelerate import PartialState

    largest = int(np.diff(bounds).max())
    padded = torch.zeros((largest, dim), dtype=torch.float32)
    padded[: stop - start] = torch.from_numpy(local)
    # The backend decides where gathered tensors live (NCCL: this process's GPU, gloo: CPU), not the model:
    # a refresh before the Trainer has moved the model to its GPU encodes on CPU but still gathers on the GPU.
    blocks = gather(padded.to(PartialState().device)).cpu().view(world, largest, dim)
    sizes = np.diff(bounds)
    gathered = torch.cat([blocks[r, : sizes[r]] for r in range(world)]).numpy()
    return gathered, stop - start
