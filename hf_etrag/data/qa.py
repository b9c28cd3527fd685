"""Question answering examples (`question`, `answers`, optional `gold_passage_id`) into token ids."""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

__all__ = ["tokenize_qa_dataset", "tokenize_questions"]

REQUIRED_QA_FIELDS = ("question", "answers")


def tokenize_qa_dataset(
    dataset: Dataset,
    retriever_tokenizer: PreTrainedTokenizerBase,
    generator_tokenizer: PreTrainedTokenizerBase | None = None,
    passage_ids: list[str] | None = None,
    max_query_length: int = 64,
    max_target_length: int = 32,
    generator_prompt_template: str = "{question}",
    answer_prefix: str = "",
) -> Dataset:
    """Tokenise questions for the query encoder (and the generator when its tokenizer differs) and the
    first answer as the generator's target; map `gold_passage_id` to the corpus row (`-1` if absent).

    The generator reads `generator_prompt_template` filled with the question, and learns `answer_prefix` +
    answer + eos (a prompt ending in 'Answer:' wants the answer's leading space, as the LM saw it in text)."""
    missing = [f for f in REQUIRED_QA_FIELDS if f not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The QA dataset lacks field(s) {missing}; each record needs `question` (str) and `answers` "
            f"(list of str). Columns found: {dataset.column_names}."
        )
    generator_tokenizer = generator_tokenizer or retriever_tokenizer
    separate = generator_tokenizer is not retriever_tokenizer
    eos_id = generator_tokenizer.eos_token_id
    if eos_id is None:
        eos_id = generator_tokenizer.sep_token_id
    if eos_id is None:
        raise ValueError("The generator tokenizer has neither `eos_token` nor `sep_token`; set `eos_token`.")
    row_of = {pid: row for row, pid in enumerate(passage_ids or [])}

    def _tokenize(batch: dict[str, list]) -> dict[str, list]:
        for offset, answers in enumerate(batch["answers"]):
            if not answers or not isinstance(answers, list):
                raise ValueError(
                    f"Record {batch.get('id', [None] * (offset + 1))[offset]!r} has no answers: `answers` must "
                    "be a non-empty list of strings."
                )
        out = tokenize_questions(
            batch["question"],
            retriever_tokenizer,
            generator_tokenizer,
            max_query_length,
            generator_prompt_template,
        )
        # Targets are the answer then eos: the decoder's start token is the generator's business, not data.
        targets = generator_tokenizer(
            [answer_prefix + a[0] for a in batch["answers"]],
            truncation=True,
            max_length=max_target_length - 1,
            add_special_tokens=False,
        )["input_ids"]
        out["labels"] = [t + [eos_id] for t in targets]
        if separate:
            # jsa/vrag's posterior retriever reads question and answer in the retriever's vocabulary.
            out["posterior_input_ids"] = retriever_tokenizer(
                batch["question"],
                [a[0] for a in batch["answers"]],
                truncation="only_first",
                max_length=max_query_length + max_target_length,
            )["input_ids"]
        golds = batch.get("gold_passage_id") or [None] * len(batch["question"])
        out["gold_passage_index"] = [row_of.get(str(g), -1) if g is not None else -1 for g in golds]
        return out

    return dataset.map(_tokenize, batched=True, desc="Tokenising questions")


def tokenize_questions(
    questions: list[str],
    retriever_tokenizer: PreTrainedTokenizerBase,
    generator_tokenizer: PreTrainedTokenizerBase | None = None,
    max_query_length: int = 64,
    generator_prompt_template: str = "{question}",
) -> dict[str, list[list[int]]]:
    """The model inputs of bare questions: `input_ids` for the query encoder and, when the generator has its own
    tokenizer, `generator_input_ids` (the question inside `generator_prompt_template`). Training data
    ([`tokenize_qa_dataset`]) and inference (`EtragModel.answer`) tokenise questions through this one function."""
    out = {
        "input_ids": retriever_tokenizer(questions, truncation=True, max_length=max_query_length)["input_ids"]
    }
    if generator_tokenizer is not None and generator_tokenizer is not retriever_tokenizer:
        out["generator_input_ids"] = _prompt_ids(
            generator_tokenizer, questions, generator_prompt_template, max_query_length
        )
    elif generator_prompt_template != "{question}":
        raise ValueError(
            "`generator_prompt_template` needs a generator tokenizer of its own (the generator reads the "
            "retriever's query ids here); pass `generator_tokenizer` or drop the template."
        )
    return out


def _prompt_ids(
    tokenizer: PreTrainedTokenizerBase, questions: list[str], template: str, max_length: int
) -> list[list[int]]:
    """The template around each question, truncating the question alone so that the prompt's end (say
    'Answer:') always survives."""
    if template == "{question}":
        return tokenizer(questions, truncation=True, max_length=max_length)["input_ids"]
    prefix, suffix = template.split("{question}", 1)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    room = max_length - len(prefix_ids) - len(suffix_ids)
    if room < 1:
        raise ValueError(
            f"`generator_prompt_template` {template!r} takes {len(prefix_ids) + len(suffix_ids)} tokens, leaving "
            f"no room for the question within `max_query_length` ({max_length}); raise `max_query_length`."
        )
    question_ids = tokenizer(questions, add_special_tokens=False, truncation=True, max_length=room)[
        "input_ids"
    ]
    return [prefix_ids + ids + suffix_ids for ids in question_ids]
