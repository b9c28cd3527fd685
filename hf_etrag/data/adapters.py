"""Dataset adapters: every task into the QA schema that [`tokenize_qa_dataset`] consumes.

| loader | records | columns out |
|---|---|---|
| [`load_relation_extraction`] | TACRED layout (`token`, spans, `relation`) | `id, question, answers, label, subject, object` |
| [`load_open_qa`] | `question`, `answers`, optional `gold_passage_id` | `id, question, answers, gold_passage_id` |
| [`load_dialogue`] | `history` (oldest first), `response`, optional `gold_passage_id` | `id, question, answers, gold_passage_id, history` |
| [`load_corpus`] | `id`, `text`, optional `title` | `id, title, text` |

Each takes a `source` (a `.json`/`.jsonl` file, a folder plus `split`, or a Hub dataset id; see
`hf_etrag.data.sources`) and checks every record when it loads: a bad one raises `ValueError` naming the
file, the record id and position, the field and the fix. `columns={"source_name": "our_name"}` renames
fields of datasets laid out differently (e.g. Hub datasets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from datasets import Dataset, Features, List, Value

from ..retrieval.index import validate_corpus
from .relation import (
    DEFAULT_RELATION_TEMPLATE,
    SEMEVAL_NEGATIVE_LABEL,
    TACRED_NEGATIVE_LABEL,
    load_relation_extraction,
    relation_labels,
    verbalize_labels,
    verbalize_relation,
)
from .sources import RecordContext, map_records, read_source

__all__ = [
    "DEFAULT_RELATION_TEMPLATE",
    "SEMEVAL_NEGATIVE_LABEL",
    "TACRED_NEGATIVE_LABEL",
    "load_corpus",
    "load_dialogue",
    "load_open_qa",
    "load_relation_extraction",
    "relation_labels",
    "verbalize_labels",
    "verbalize_relation",
]

_QA_FEATURES = {
    "id": Value("string"),
    "question": Value("string"),
    "answers": List(Value("string")),
    "gold_passage_id": Value("string"),
}


def _answers(record: dict[str, Any], context: RecordContext) -> list[str]:
    answers = record.get("answers")
    # The SQuAD layout: {"text": [...], "answer_start": [...]}.
    if isinstance(answers, dict) and "text" in answers:
        answers = answers["text"]
    answers = context.text_list({"answers": answers}, "answers", "answer strings")
    if not all(a.strip() for a in answers):
        raise context.error("answers", f"contains a blank answer ({answers!r})", "Remove the blank entries.")
    return answers


def load_open_qa(
    source: str | os.PathLike[str],
    split: str | None = None,
    limit: int | None = None,
    *,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Open-domain QA records: `question` (str), `answers` (non-empty list of str, or SQuAD's
    `{"text": [...]}`), optional `gold_passage_id` (the corpus id of the passage holding the answer)."""
    raw = read_source(source, split, columns=columns, limit=limit)

    def _convert(record: dict[str, Any], context: RecordContext) -> dict[str, Any]:
        return {
            "question": context.text(record, "question"),
            "answers": _answers(record, context),
            "gold_passage_id": context.optional_id(record, "gold_passage_id"),
        }

    return map_records(
        raw, _convert, Features(_QA_FEATURES), ("question", "answers"), "Open-domain QA records"
    )


def load_dialogue(
    source: str | os.PathLike[str],
    split: str | None = None,
    max_history_turns: int | None = 3,
    turn_separator: str = " | ",
    limit: int | None = None,
    *,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Knowledge-grounded dialogue turns: `history` (utterances, oldest first), `response` (the reply to
    learn), optional `gold_passage_id`.

    The query is the last `max_history_turns` utterances (all with `None`) in reverse order, most recent
    first, joined by `turn_separator`: query encoders truncate from the end (64 tokens by default in
    `tokenize_qa_dataset`), so truncation drops the oldest turns and keeps the one being answered. With
    history `[a, b, c, d]` and `max_history_turns=2` the query is `"d | c"`. `history` keeps every turn.
    """
    if max_history_turns is not None and (
        isinstance(max_history_turns, bool) or not isinstance(max_history_turns, int) or max_history_turns < 1
    ):
        raise ValueError(
            f"`max_history_turns` must be a positive integer or None; got {max_history_turns!r}."
        )
    raw = read_source(source, split, columns=columns, limit=limit)

    def _convert(record: dict[str, Any], context: RecordContext) -> dict[str, Any]:
        history = record.get("history")
        if isinstance(history, list) and not history:
            raise context.error(
                "history", "is empty", "A dialogue turn needs at least one earlier utterance to respond to."
            )
        history = context.text_list(record, "history", "utterances, oldest first")
        blank = [i for i, turn in enumerate(history) if not turn.strip()]
        if blank:
            raise context.error("history", f"has blank utterance(s) at {blank}", "Remove or fill them.")
        recent = history[::-1] if max_history_turns is None else history[::-1][:max_history_turns]
        return {
            "question": turn_separator.join(turn.strip() for turn in recent),
            "answers": [context.text(record, "response")],
            "gold_passage_id": context.optional_id(record, "gold_passage_id"),
            "history": history,
        }

    features = Features({**_QA_FEATURES, "history": List(Value("string"))})
    return map_records(raw, _convert, features, ("history", "response"), "Dialogue records")


def load_corpus(source: str | os.PathLike[str], split: str | None = None) -> Dataset:
    """A passage corpus: `id` (str, or int made str), `text`, optional `title` (`""` when absent).

    For a folder, `split` defaults to `"corpus"` (`<folder>/corpus.jsonl`). Ids must be unique
    (checked by [`hf_etrag.retrieval.index.validate_corpus`]).
    """
    if split is None and os.path.isdir(source):
        split = "corpus"
    raw = read_source(source, split)

    def _convert(record: dict[str, Any], context: RecordContext) -> dict[str, Any]:
        if record.get("id") is None:
            raise context.error("id", "is missing", "Every passage needs a unique `id`.")
        title = record.get("title")
        if title is not None and not isinstance(title, str):
            raise context.error("title", f"must be a string, got {title!r}", "Use a string or leave it out.")
        return {"title": title or "", "text": context.text(record, "text")}

    features = Features({"id": Value("string"), "title": Value("string"), "text": Value("string")})
    corpus = map_records(raw, _convert, features, ("id", "text"), "Passage corpus")
    try:
        validate_corpus(corpus)
    except ValueError as error:
        raise ValueError(f"{raw.info.name}: {error}") from error
    return corpus
