"""The options `EtragTrainingArguments` adds to `TrainingArguments`: index refresh, the retriever's learning rate,
index snapshots in checkpoints and the NaN/inf tolerance.

They live in a plain dataclass, free of torch and transformers, so that `hf-etrag train --help` lists them without
importing the Trainer; [`EtragTrainingArguments`] inherits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EtragTrainingOptions"]


@dataclass
class EtragTrainingOptions:
    """Retrieval-side training options (a mixin of [`EtragTrainingArguments`])."""

    refresh_steps: int = field(
        default=0,
        metadata={
            "help": "Refresh the index every N optimiser steps (0: never). A refresh re-encodes the corpus with the "
            "current document encoder."
        },
    )
    refresh_on_epoch_end: bool = field(
        default=False, metadata={"help": "Also refresh the index at the end of every epoch."}
    )
    refresh_batch_size: int = field(
        default=128, metadata={"help": "Passages per encoder batch during a refresh."}
    )
    retriever_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the query/document encoders (null: `learning_rate`). Pretrained encoders "
            "usually want a smaller one than a freshly initialised generator."
        },
    )
    save_index_with_checkpoints: bool = field(
        default=True,
        metadata={
            "help": "Save the passage index inside every checkpoint. It holds the corpus, the embeddings and the "
            "FAISS index."
        },
    )
    max_nonfinite_steps: int = field(
        default=10,
        metadata={
            "help": "Optimiser steps in a row with a NaN/inf loss or gradient to tolerate. Such a step's bad "
            "micro-batches get no backward (a step with nothing finite left is not applied) and a warning "
            "names the step; one more in a row stops training with an error. Counts consecutive steps (a "
            "finite step resets it), so a rare bad batch in a long run is tolerated while a diverged run "
            "stops. 0: stop at the first."
        },
    )

    def check_etrag_options(self) -> None:
        """Raise a `ValueError` naming the field, its value and what it allows."""
        if self.refresh_steps < 0:
            raise ValueError(
                f"`refresh_steps` must be >= 0 (0 disables periodic refresh); got {self.refresh_steps}."
            )
        if self.retriever_learning_rate is not None and self.retriever_learning_rate < 0:
            raise ValueError(f"`retriever_learning_rate` must be >= 0; got {self.retriever_learning_rate}.")
        if self.max_nonfinite_steps < 0:
            raise ValueError(
                "`max_nonfinite_steps` must be >= 0 (0 stops at the first NaN/inf loss); "
                f"got {self.max_nonfinite_steps}."
            )
        if self.refresh_batch_size < 1:
            raise ValueError(f"`refresh_batch_size` must be >= 1; got {self.refresh_batch_size}.")
