"""Restoring the passage index when `EtragTrainer` resumes from a checkpoint, and checking that it belongs there.

The checkpoint's `passage_index/` (embeddings, FAISS index, the step it was built at) is restored before training
starts, so the run continues on the index the interrupted run had, with no re-encoding. Its fingerprints (see
`hf_etrag.retrieval.fingerprint`) are checked against the index given to the trainer and, once the checkpoint's
weights are loaded, against the document encoder:

- another corpus (other passage ids) is refused: the dataset's gold passage rows would point elsewhere;
- the same ids with other texts or token ids, or vectors that the resumed document encoder did not build (an index
  copied from another run), are not adopted: a warning names the cause and the index is rebuilt from the resumed
  encoder before the first step. That is what a refresh would do anyway, so it is safe; only bit-identity with the
  interrupted run is lost (it trained on other vectors).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..files import INDEX_FOLDER
from ..retrieval.distributed import unwrap_for_encoding
from ..retrieval.fingerprint import index_mismatch, tokens_fingerprint
from ..retrieval.index import RETRIEVER_IDS, PassageIndex
from .callbacks import IndexRefreshCallback, refresh_index, training_autocast_dtype

__all__ = ["ResumedIndexCheck", "restore_index"]

logger = logging.getLogger(__name__)


class ResumedIndexCheck(TrainerCallback):
    """At `on_train_begin` of a resumed run (the checkpoint's weights are loaded by then, DeepSpeed and FSDP
    included): rebuild the index from the resumed document encoder when [`restore_index`] found stale passages, or
    when its vectors do not come from that encoder. Does nothing otherwise, or when not resuming."""

    def __init__(self) -> None:
        self.checkpoint: str | None = None
        self.rebuild_reason: str | None = None
        self.callbacks: list = []  # the trainer's, to tell its refresh callback about a rebuild

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs,
    ) -> None:
        checkpoint, reason = self.checkpoint, self.rebuild_reason
        self.checkpoint = self.rebuild_reason = None
        if checkpoint is None or model is None:
            return
        etrag = unwrap_for_encoding(model)
        index = etrag.attached_index
        if index is None or (index.embeddings is None and reason is None):
            return
        if reason is None:
            mismatch = index_mismatch(etrag, index)
            if mismatch is None:
                return
            reason = (
                f"the index in {os.path.join(checkpoint, INDEX_FOLDER)} does not match its model: {mismatch}"
            )
        logger.warning(
            "Resuming from %s: %s. The index is rebuilt from the resumed document encoder before the first step "
            "(as a refresh would); the resumed run no longer repeats the interrupted one exactly.",
            checkpoint,
            reason,
        )
        refresh_index(
            model,
            getattr(args, "refresh_batch_size", 128),
            step=state.global_step,
            autocast_dtype=training_autocast_dtype(args),
        )
        for callback in self.callbacks:
            if isinstance(callback, IndexRefreshCallback):
                callback.last_refresh_step = state.global_step


def restore_index(model: Any, checkpoint: str, callbacks: list, check: ResumedIndexCheck) -> None:
    """Attach or adopt `checkpoint`'s saved index (see the module docstring); `check` gets what is left to verify
    once the weights are loaded."""
    folder = os.path.join(checkpoint, INDEX_FOLDER)
    if not os.path.isdir(folder):
        logger.warning(
            "%s has no %s/ (saved with `save_index_with_checkpoints=False`?): the attached index is kept, so "
            "the resumed run retrieves from other embeddings than the interrupted one did.",
            checkpoint,
            INDEX_FOLDER,
        )
        return
    saved = PassageIndex.load(folder)
    current = model.attached_index
    check.checkpoint, check.rebuild_reason, check.callbacks = checkpoint, None, callbacks
    if current is None:
        model.set_index(saved)
    elif current.passage_ids != saved.passage_ids:
        raise ValueError(
            f"The index given to the trainer ({len(current)} passages) is not the corpus that {checkpoint} was "
            f"trained with ({len(saved)} passages, saved in {folder}): pass the same corpus, or pass no "
            "`index=` to resume with the checkpoint's."
        )
    elif current.corpus_fingerprint != saved.corpus_fingerprint or tokens_fingerprint(
        current.corpus, RETRIEVER_IDS
    ) != tokens_fingerprint(saved.corpus, RETRIEVER_IDS):
        what = "texts or titles" if current.corpus_fingerprint != saved.corpus_fingerprint else "token ids"
        check.rebuild_reason = (
            f"the passages given to the trainer have the same {len(current)} ids as those {checkpoint} was trained "
            f"with, but other {what}, so its saved vectors ({folder}) are stale"
        )
    elif saved.embeddings is not None:
        # Keep the caller's corpus object; adopt the saved vectors and FAISS index as they are (rebuilding
        # would retrain IVF/PQ quantisers and could rank differently from the interrupted run).
        current.embeddings, current.faiss_index = saved.embeddings, saved.faiss_index
        current.built_at_step = saved.built_at_step
        current.encoder_fingerprint, current.saved_with_encoder = (
            saved.encoder_fingerprint,
            saved.saved_with_encoder,
        )
    for callback in callbacks:
        if isinstance(callback, IndexRefreshCallback):
            callback.last_refresh_step = model.index.built_at_step
