"""`EtragTrainingArguments`: `TrainingArguments` plus the options of retrieval inside the training step."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .options import EtragTrainingOptions

__all__ = ["EtragTrainingArguments"]


@dataclass
class EtragTrainingArguments(EtragTrainingOptions, TrainingArguments):
    """`TrainingArguments` plus [`EtragTrainingOptions`] (index refresh, the retriever's learning rate, ...).

    `remove_unused_columns` defaults to `False` because the batch carries retrieval fields
    (`gold_passage_index`, `generator_input_ids`) that `forward`'s signature does not name.
    """

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: retrieval fields are not in `forward`'s signature."}
    )

    def __post_init__(self) -> None:
        self.check_trainer_ranges()
        super().__post_init__()
        self.check_etrag_options()
