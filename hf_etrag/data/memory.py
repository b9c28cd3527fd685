"""The instance memory of ETRAG: the training set itself, each example encoded with its target."""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..retrieval.index import tokenize_corpus

__all__ = ["build_instance_memory", "add_memory_index"]


def build_instance_memory(
    examples: Dataset,
    retriever_tokenizer: PreTrainedTokenizerBase,
    input_field: str = "question",
    target_field: str = "answers",
    max_length: int = 128,
) -> Dataset:
    """A tokenised corpus with one row per training example: its input, the tokenizer's separator, then its
    target verbalisation (a list target uses its first entry), so that ETRAG can pool the label words on their
    own. Row `i` is example `i`."""
    for field in (input_field, target_field):
        if field not in examples.column_names:
            raise ValueError(
                f"Building the instance memory needs field {field!r}; the dataset has {examples.column_names}."
            )

    separator = f" {retriever_tokenizer.sep_token} " if retriever_tokenizer.sep_token else " "

    def _row(example: dict, index: int) -> dict:
        target = example[target_field]
        target = target[0] if isinstance(target, list) else target
        return {"id": f"instance-{index}", "text": f"{example[input_field]}{separator}{target}"}

    memory = examples.map(
        _row, with_indices=True, remove_columns=examples.column_names, desc="Instance memory"
    )
    return tokenize_corpus(memory, retriever_tokenizer, max_passage_length=max_length)


def add_memory_index(dataset: Dataset) -> Dataset:
    """Mark each training example with its own memory row, so that it never retrieves itself."""
    return dataset.add_column("memory_index", list(range(len(dataset))))
