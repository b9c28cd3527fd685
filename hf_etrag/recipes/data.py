"""A recipe's data: examples of each task loaded through the adapters, the index the model retrieves from, and
the tokenised datasets the trainer and the evaluation read.

What the index holds depends on the objective: `etrag` retrieves *training instances* (the instance memory,
[`build_instance_memory`], with each instance's label and entities kept for the evaluation's analysis); every
other objective retrieves passages of `corpus_source`.
"""

from __future__ import annotations

from datasets import Dataset

from ..data.adapters import load_corpus
from ..data.memory import add_memory_index, build_instance_memory
from ..data.qa import tokenize_qa_dataset
from ..data.tasks import get_task
from ..modeling.tokenization import EtragTokenizers
from ..retrieval.index import PassageIndex, tokenize_corpus
from .arguments import DataArguments, ModelArguments

__all__ = [
    "MODEL_COLUMNS",
    "build_index",
    "load_examples",
    "reader_warmup_dataset",
    "tokenize_examples",
    "training_dataset",
]

# What the collator reads; text columns stay out of the training batches.
MODEL_COLUMNS = (
    "input_ids",
    "generator_input_ids",
    "posterior_input_ids",
    "labels",
    "gold_passage_index",
    "memory_index",
)
# Columns of the instance memory kept for the evaluation's retrieved-instance analysis (relation extraction).
MEMORY_ANALYSIS_COLUMNS = ("label", "subject", "object")


def load_examples(
    data_args: DataArguments, source: str, split: str | None, limit: int | None = None
) -> Dataset:
    """Examples of the recipe's task in the QA schema (`question`, `answers`, ...), first `limit` only."""
    return get_task(data_args.task).load(source, split, limit, data_args)


def build_index(
    data_args: DataArguments,
    model_args: ModelArguments,
    tokenizers: EtragTokenizers,
    train_examples: Dataset,
) -> PassageIndex:
    """The index without embeddings (encode it with `refresh_index`): the instance memory for `etrag`, the
    tokenised `corpus_source` otherwise."""
    generator_tokenizer = None if tokenizers.shared else tokenizers.generator
    if model_args.reads_instance_memory:
        memory = build_instance_memory(
            train_examples, tokenizers.retriever, max_length=model_args.max_passage_length
        )
        for column in MEMORY_ANALYSIS_COLUMNS:
            if column in train_examples.column_names:
                memory = memory.add_column(column, train_examples[column])
        return PassageIndex(memory, index_factory=model_args.index_factory)
    corpus = load_corpus(data_args.corpus_source, data_args.corpus_split)
    tokenized = tokenize_corpus(
        corpus, tokenizers.retriever, generator_tokenizer, max_passage_length=model_args.max_passage_length
    )
    return PassageIndex(tokenized, index_factory=model_args.index_factory)


def tokenize_examples(
    examples: Dataset, tokenizers: EtragTokenizers, model_args: ModelArguments, index: PassageIndex
) -> Dataset:
    """Token ids for the query encoder (and the generator when its tokenizer differs) and the target; text
    columns are kept. `gold_passage_index` is the corpus row of `gold_passage_id` (-1 for the instance memory,
    whose rows are training examples, not passages)."""
    passage_ids = None if model_args.reads_instance_memory else index.passage_ids
    return tokenize_qa_dataset(
        examples,
        tokenizers.retriever,
        None if tokenizers.shared else tokenizers.generator,
        passage_ids=passage_ids,
        max_query_length=model_args.max_query_length,
        max_target_length=model_args.max_target_length,
        generator_prompt_template=model_args.generator_prompt_template,
        answer_prefix=model_args.generator_answer_prefix,
    )


def training_dataset(
    examples: Dataset,
    tokenizers: EtragTokenizers,
    model_args: ModelArguments,
    index: PassageIndex,
    in_memory: bool = True,
) -> Dataset:
    """Model columns only. For `etrag`, examples that are rows of the instance memory (`in_memory`: the training
    set) carry their row as `memory_index`, so that they never retrieve themselves."""
    tokenized = tokenize_examples(examples, tokenizers, model_args, index)
    if model_args.reads_instance_memory and in_memory:
        tokenized = add_memory_index(tokenized)
    return tokenized.select_columns([c for c in MODEL_COLUMNS if c in tokenized.column_names])


def reader_warmup_dataset(train: Dataset) -> Dataset:
    """Training examples with a gold passage, each fixed to that one passage (`doc_indices`)."""
    with_gold = train.filter(lambda row: row["gold_passage_index"] >= 0, desc="Examples with a gold passage")
    if len(with_gold) == 0:
        raise ValueError(
            "`reader_warmup_steps` > 0 needs training examples whose `gold_passage_id` is in the corpus; none is. "
            "Check `corpus_source`, or set `reader_warmup_steps: 0`."
        )
    return with_gold.map(lambda row: {"doc_indices": [row["gold_passage_index"]]}, desc="Gold passages")
