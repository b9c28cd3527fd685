"""Generation with its evidence.

`model.generate(..., return_dict_in_generate=True)` returns an [`EtragGenerateOutput`]: the generated ids with the
passages they were generated from (corpus row, id, title, text, retrieval score), as transformers' RAG models
return their retrieved documents. `model.answer("question")` does the whole round trip for question strings:
tokenise with the model's own tokenizers, retrieve, generate, decode.

```python
model = EtragModel.from_pretrained("out")            # a folder saved with its tokenizers and passage_index/
model.set_index(PassageIndex.from_pretrained("out"))
result = model.answer("Which city hosted Super Bowl 50?")
print(result.answer)
for passage in result.passages:                       # best first
    print(f"{passage.score:.2f} {passage.id} {passage.title}: {passage.text[:80]}")
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import ModelOutput

from ..retrieval.index import PassageIndex
from .tokenization import EtragTokenizers

__all__ = [
    "EtragAnswer",
    "EtragAnsweringMixin",
    "EtragGenerateOutput",
    "RetrievedPassage",
    "retrieved_passages",
]


@dataclass
class RetrievedPassage:
    """One retrieved passage: where it is in the index and what it says.

    Attributes:
        row: its row number in the index's corpus (what `retrieved_doc_indices` holds).
        id: the corpus' `id` of the passage.
        score: its retrieval score `sim(q, d) / temperature` (the `doc_scores` entry).
        probability: `p(z | x)`, the softmax of the K scores: the weight the passage gets in the marginalisation.
        title: the corpus' `title`, or `None` when the corpus has no title column.
        text: the corpus' `text`.
    """

    row: int
    id: str
    score: float
    probability: float
    title: str | None = None
    text: str | None = None


@dataclass
class EtragGenerateOutput(ModelOutput):
    """Output of `EtragModel.generate(..., return_dict_in_generate=True)`.

    Attributes:
        sequences: `(B, L)` generated ids, right-padded with the generator's pad id, no start token (exactly what
            `generate` returns without `return_dict_in_generate`).
        retrieved_doc_indices: `(B, K)` corpus rows of the passages each example was generated from, best first.
        doc_scores: `(B, K)` their retrieval scores `sim(q, d_k) / temperature`.
        passages: per example, the K [`RetrievedPassage`]s (id, title, text, score), best first.

    Objectives that decode themselves (`etrag`, which reads retrieved training instances as soft prompts) fill
    `sequences` only.
    """

    sequences: torch.Tensor | None = None
    retrieved_doc_indices: torch.Tensor | None = None
    doc_scores: torch.Tensor | None = None
    passages: list[list[RetrievedPassage]] | None = None


@dataclass
class EtragAnswer:
    """What [`EtragAnsweringMixin.answer`] returns for one question.

    Attributes:
        question: the question as given.
        answer: the generated ids decoded with the generator's tokenizer (special tokens skipped, surrounding
            whitespace stripped).
        passages: the retrieved passages the answer was generated from, best first (empty for `etrag`).
        sequence: the generated ids (the row of `generate`'s `sequences`, padding included).
    """

    question: str
    answer: str
    passages: list[RetrievedPassage] = field(default_factory=list)
    sequence: list[int] = field(default_factory=list)


def retrieved_passages(
    index: PassageIndex, doc_indices: torch.Tensor, doc_scores: torch.Tensor
) -> list[list[RetrievedPassage]]:
    """The `(B, K)` corpus rows `doc_indices`, scored `doc_scores`, as [`RetrievedPassage`]s read from the
    index's corpus (`id`, `text` and, when the corpus has one, `title`)."""
    rows = doc_indices.cpu().tolist()
    scores = doc_scores.detach().float().cpu()
    probabilities = torch.softmax(scores, dim=-1).tolist()
    wanted = sorted({row for example in rows for row in example})
    columns = [name for name in ("id", "title", "text") if name in index.corpus.column_names]
    records = index.corpus.select_columns(columns)[wanted]
    position = {row: i for i, row in enumerate(wanted)}

    def passage(row: int, score: float, probability: float) -> RetrievedPassage:
        i = position[row]
        title = records["title"][i] if "title" in records else None
        return RetrievedPassage(row, str(records["id"][i]), score, probability, title, records["text"][i])

    return [
        [passage(*entry) for entry in zip(example, example_scores, example_probabilities, strict=True)]
        for example, example_scores, example_probabilities in zip(
            rows, scores.tolist(), probabilities, strict=True
        )
    ]


class EtragAnsweringMixin:
    """`answer`: question strings in, decoded answers with their evidence out (mixed into `EtragModel`)."""

    def answer(
        self,
        question: str | Sequence[str],
        tokenizers: EtragTokenizers | None = None,
        generator_prompt_template: str = "{question}",
        max_query_length: int = 64,
        **generate_kwargs: Any,
    ) -> EtragAnswer | list[EtragAnswer]:
        """Tokenise `question` (one string or a list), retrieve, generate and decode.

        Args:
            question: a question, or a list of them (answered as one batch).
            tokenizers: the model's [`EtragTokenizers`]; by default loaded once from the folder (or Hub repo) the
                model was loaded from, where `EtragTrainer` saves them when given `processing_class=EtragTokenizers(...)`.
            generator_prompt_template: the template the generator was trained with (the recipe's
                `generator_prompt_template`; only for a generator with its own tokenizer).
            max_query_length: token limit of the question, as in training.
            generate_kwargs: passed on to `generate` (`max_new_tokens`, `n_docs`, `decoding`, `num_beams`...).

        Returns:
            An [`EtragAnswer`] (a list of them for a list of questions): the decoded answer, the retrieved
            passages with their scores, and the generated ids. A passage index must be attached (`set_index`).
        """
        from ..data.collator import EtragDataCollator
        from ..data.qa import tokenize_questions

        questions = [question] if isinstance(question, str) else list(question)
        tokenizers = tokenizers or self._own_tokenizers()
        features = tokenize_questions(
            questions,
            tokenizers.retriever,
            tokenizers.generator if not tokenizers.shared else None,
            max_query_length,
            generator_prompt_template,
        )
        rows = [dict(zip(features, values, strict=True)) for values in zip(*features.values(), strict=True)]
        batch = EtragDataCollator(self.retriever_pad_id, self.generator_pad_id)(rows)
        device = next(self.parameters()).device
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        # The batch holds input_ids, attention_mask and, with a generator tokenizer of its own, generator_input_ids
        # and generator_attention_mask: exactly generate's inputs.
        output = self.generate(**batch, return_dict_in_generate=True, **generate_kwargs)
        texts = tokenizers.generator_tokenizer.batch_decode(output.sequences, skip_special_tokens=True)
        passages = output.passages or [[] for _ in questions]
        answers = [
            EtragAnswer(q, text.strip(), evidence, ids)
            for q, text, evidence, ids in zip(
                questions, texts, passages, output.sequences.tolist(), strict=True
            )
        ]
        return answers[0] if isinstance(question, str) else answers

    def _own_tokenizers(self) -> EtragTokenizers:
        cached = getattr(self, "_answer_tokenizers", None)
        if cached is not None:
            return cached
        source = self.name_or_path
        if not source:
            raise ValueError(
                "`answer` needs the model's tokenizers: pass `tokenizers=EtragTokenizers(retriever_tokenizer, "
                "generator_tokenizer)`, or load the model from a folder saved with them (`EtragTrainer(..., "
                "processing_class=EtragTokenizers(...))` saves them next to the weights)."
            )
        try:
            tokenizers = EtragTokenizers.from_pretrained(source)
        except FileNotFoundError as error:
            raise ValueError(
                f"`answer` found no tokenizers in {source!r}, where the model was loaded from: pass "
                "`tokenizers=EtragTokenizers(...)`, or save them there (`EtragTokenizers.save_pretrained`)."
            ) from error
        self._answer_tokenizers = tokenizers
        return tokenizers
