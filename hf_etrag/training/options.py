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
    refresh_retrain_index: bool = field(
        default=False,
        metadata={
            "help": "Retrain an approximate index's quantiser (IVF centroids, PQ codebooks) at every refresh. False: "
            "train it at the first build and reuse it (training costs about 40 s at a million passages)."
        },
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
            "stops. Index refreshes that produce NaN/inf passage vectors are counted the same way, in a count "
            "of their own: such a refresh is not applied (the index keeps its last finite vectors) and a "
            "warning names the step; one more in a row than this stops training (a finite refresh resets the "
            "count). 0: stop at the first."
        },
    )

    def check_trainer_ranges(self) -> None:
        """Raise a `ValueError` for a `TrainingArguments` value out of its range (transformers accepts a negative
        `max_steps` or `save_steps` silently, or fails late); called before `TrainingArguments.__post_init__`."""
        max_steps = getattr(self, "max_steps", -1)
        if max_steps != -1 and max_steps < 1:
            raise ValueError(
                f"`max_steps` must be a positive number of optimiser steps, or -1 to train for "
                f"`num_train_epochs`; got {max_steps}."
            )
        epochs = getattr(self, "num_train_epochs", 1.0)
        if max_steps == -1 and not epochs > 0:
            raise ValueError(f"`num_train_epochs` must be > 0 (or set `max_steps`); got {epochs}.")
        for name in ("save_steps", "logging_steps", "eval_steps"):
            value = getattr(self, name, None)
            if value is not None and not value > 0:
                raise ValueError(
                    f"`{name}` must be > 0 (a number of steps, or a fraction of the run below 1); got {value}."
                )
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            value = getattr(self, name, 1)
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1; got {value}.")
        for name in (
            "warmup_steps",
            "learning_rate",
            "weight_decay",
            "max_grad_norm",
            "dataloader_num_workers",
        ):
            value = getattr(self, name, 0)
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0; got {value}.")

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
