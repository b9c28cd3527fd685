"""`IndexRefreshCallback`: keep the passage index in step with the document encoder being trained."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

from ..retrieval.distributed import encode_corpus_sharded, unwrap_for_encoding
from ..retrieval.fingerprint import encoder_fingerprint
from ..retrieval.index import NonFiniteVectorsError

__all__ = ["IndexRefreshCallback", "refresh_index", "training_autocast_dtype"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def refresh_index(
    model: Any,
    batch_size: int = 128,
    step: int | None = None,
    show_progress: bool = False,
    autocast_dtype: torch.dtype | None = None,
    retrain_quantizer: bool = False,
) -> dict:
    """Re-encode the whole corpus with `model`'s current document encoder and swap the index.

    In a multi-process job (`accelerate launch`, `torchrun`; DDP, DeepSpeed ZeRO-2, FSDP2) every process
    must call this: each encodes one contiguous shard of the corpus, the shards are gathered in corpus
    order, and every process builds the same index. `model` may be the wrapped model (it is unwrapped).

    Returns `{"refresh_seconds", "refresh_passages_encoded", "refresh_staleness"}`: the passages this
    process encoded (its shard), and staleness `1 - mean cos(old_i, new_i)` over passages, how far the
    stored embeddings had drifted from the encoder (0 when nothing changed).

    `autocast_dtype` (e.g. `torch.bfloat16`): encode under autocast, as mixed-precision training runs its forward
    passes (the callback passes the Trainer's `bf16`/`fp16`); vectors are stored in float32 either way.
    `retrain_quantizer`: retrain an approximate index's quantiser (IVF, PQ) instead of reusing it.

    Raises [`hf_etrag.retrieval.index.NonFiniteVectorsError`] when the encoder produced NaN/inf vectors; the index
    then keeps its earlier embeddings (every process raises alike: they all hold the same gathered vectors).
    """
    model = unwrap_for_encoding(model)
    index = model.index
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        device = next(model.parameters()).device
        dim = model.document_encoder.config.hidden_size
        # An objective may keep per-row features from the same token states (ETRAG's span vectors): they travel
        # with the vectors, one row each, so sharded refreshes gather them alike.
        extra = model.objective.row_features_dim(model) if model.objective is not None else 0
        autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
        with autocast:
            fresh, encoded_here = encode_corpus_sharded(
                partial(_vectors_and_row_features, model) if extra else model.encode_passages,
                index.retriever_tokens,
                pad_id=model.retriever_pad_id,
                dim=dim + extra,
                batch_size=batch_size,
                device=device,
                show_progress=show_progress,
                description="Refreshing index",
            )
    finally:
        model.train(was_training)
    fresh, row_features = (np.ascontiguousarray(fresh[:, :dim]), fresh[:, dim:]) if extra else (fresh, None)
    stats = {"refresh_seconds": time.perf_counter() - start, "refresh_passages_encoded": encoded_here}
    if index.embeddings is not None and index.embeddings.shape == fresh.shape:
        old, new = index.embeddings, fresh
        cosine = (old * new).sum(1) / (np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1) + 1e-12)
        stats["refresh_staleness"] = float(1.0 - cosine.mean())
    # The encoder's fingerprint goes with the vectors: saves record it, and loads, evaluations and resumes check it.
    index.set_embeddings(fresh, step=step, encoder=encoder_fingerprint(model), retrain=retrain_quantizer)
    if row_features is not None:
        model.objective.set_row_features(model, row_features)
    return stats


def training_autocast_dtype(args: TrainingArguments | None) -> torch.dtype | None:
    """The dtype the Trainer's forward passes autocast to (`bf16` / `fp16`), or `None` for float32."""
    if args is None:
        return None
    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False):
        return torch.float16
    return None


def _vectors_and_row_features(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """`(B, H + F)`: the passage vectors, then the objective's row features, from one encoder pass."""
    hidden = model.encode_token_states(input_ids, attention_mask, side="document")
    features = model.objective.row_features(model, hidden, input_ids, attention_mask)
    return torch.cat([model.pool_vectors(hidden, attention_mask), features.to(hidden.dtype)], dim=-1)


class IndexRefreshCallback(TrainerCallback, ExportableState):
    r"""Re-encode the corpus every `refresh_steps` optimiser steps (and optionally at each epoch end).

    With a trained document encoder the stored passage embeddings go stale: the index ranks passages by
    vectors the encoder no longer produces. This callback rebuilds them with the current encoder (in eval
    mode, without gradient) and swaps the FAISS index whole, so a failure mid-refresh leaves the old index
    in place. It logs `refresh_seconds` and `refresh_staleness` = 1 - mean cosine(old, new). A refresh whose
    vectors hold NaN/inf is not swapped in: the index keeps the embeddings it had, a warning names the step, and
    `nonfinite_refreshes` counts such refreshes in the logs; more than the trainer's `max_nonfinite_steps` of them in
    a row stop training with an error (as NaN/inf losses do). Under
    multi-process training every process runs it at the same step and encodes its own shard of the corpus
    (`refresh_passages_encoded`); all end with the same index (see [`refresh_index`]).

    Args:
        refresh_steps: refresh when `global_step % refresh_steps == 0` (0: only at epoch ends, if enabled).
        refresh_on_epoch_end: also refresh at the end of each epoch.
        batch_size: passages per encoder batch.
        build_on_train_begin: encode the corpus before the first step if the index has no embeddings yet.

    Example:
        >>> trainer.add_callback(IndexRefreshCallback(refresh_steps=100))
    """

    def __init__(
        self,
        refresh_steps: int = 0,
        refresh_on_epoch_end: bool = False,
        batch_size: int = 128,
        build_on_train_begin: bool = True,
    ) -> None:
        if refresh_steps < 0:
            raise ValueError(f"`refresh_steps` must be >= 0; got {refresh_steps}.")
        self.refresh_steps = refresh_steps
        self.refresh_on_epoch_end = refresh_on_epoch_end
        self.batch_size = batch_size
        self.build_on_train_begin = build_on_train_begin
        self.refresh_count = 0
        self.last_refresh_step: int | None = None
        self.nonfinite_refreshes = 0  # in total, logged as `nonfinite_refreshes`
        self.nonfinite_streak = 0  # in a row: compared with `max_nonfinite_steps`
        self.last_attempt_step: int | None = None  # refreshed or not applied: an epoch end does not retry it
        self.pending_logs: dict[str, float] = {}

    def state(self) -> dict:
        return {
            "args": {
                "refresh_steps": self.refresh_steps,
                "refresh_on_epoch_end": self.refresh_on_epoch_end,
                "batch_size": self.batch_size,
                "build_on_train_begin": self.build_on_train_begin,
            },
            "attributes": {
                "refresh_count": self.refresh_count,
                "last_refresh_step": self.last_refresh_step,
                "nonfinite_refreshes": self.nonfinite_refreshes,
                "nonfinite_streak": self.nonfinite_streak,
            },
        }

    def _refresh(self, model: Any, state: TrainerState, args: TrainingArguments | None = None) -> None:
        self.last_attempt_step = state.global_step
        try:
            stats = refresh_index(
                model,
                self.batch_size,
                step=state.global_step,
                autocast_dtype=training_autocast_dtype(args),
                retrain_quantizer=bool(getattr(args, "refresh_retrain_index", False)),
            )
        except NonFiniteVectorsError as error:
            if unwrap_for_encoding(model).index.embeddings is None:
                raise  # nothing to keep: no index to train with
            self._skip_nonfinite_refresh(error, state, getattr(args, "max_nonfinite_steps", 0))
            return
        self.nonfinite_streak = 0
        self.refresh_count += 1
        self.last_refresh_step = state.global_step
        self.pending_logs.update(stats)
        logger.info("Index refreshed at step %d in %.2fs", state.global_step, stats["refresh_seconds"])

    def _skip_nonfinite_refresh(self, error: Exception, state: TrainerState, limit: int) -> None:
        self.nonfinite_refreshes += 1
        self.nonfinite_streak += 1
        if self.nonfinite_streak > limit:
            raise RuntimeError(
                f"Training stopped at step {state.global_step}: the index refresh produced NaN/inf passage vectors "
                f"in {self.nonfinite_streak} refreshes in a row, more than `max_nonfinite_steps`={limit}. {error}"
            ) from error
        logger.warning("Index refresh at step %d not applied: %s", state.global_step, error)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs,
    ) -> None:
        if self.refresh_steps and state.max_steps and self.refresh_steps > state.max_steps:
            logger.warning(
                "refresh_steps=%d exceeds the %d training steps: the index will never be refreshed.",
                self.refresh_steps,
                state.max_steps,
            )
        if (
            self.build_on_train_begin
            and model is not None
            and unwrap_for_encoding(model).index.embeddings is None
        ):
            self._refresh(model, state, args)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs,
    ) -> None:
        if self.refresh_steps and state.global_step % self.refresh_steps == 0 and model is not None:
            self._refresh(model, state, args)

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs,
    ) -> None:
        if self.refresh_on_epoch_end and model is not None and self.last_attempt_step != state.global_step:
            self._refresh(model, state, args)

    def pop_logs(self) -> dict[str, float]:
        logs, self.pending_logs = self.pending_logs, {}
        if self.nonfinite_refreshes:
            logs["nonfinite_refreshes"] = self.nonfinite_refreshes
        return logs
