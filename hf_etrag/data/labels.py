"""Decoding restricted to a closed label set (relation extraction): a token trie over the labels' words.

Each label's words are tokenised exactly as [`tokenize_qa_dataset`] tokenises a training target (no special
tokens) and followed by eos, so the constrained decoder can produce exactly the sequences the model was
trained on. [`LabelConstraint.prefix_allowed_tokens_fn`] has the signature of `generate`'s
`prefix_allowed_tokens_fn`; `EtragModel.generate(..., label_constraint=constraint)` applies it on every
decoding path (ETRAG's soft prompts, RAG-Sequence through `generate`, RAG-Token by masking its
marginalised next-token scores).

Example:

```python
label_words = verbalize_labels(relation_labels(train))            # {"Cause-Effect(e1,e2)": "cause effect", ...}
constraint = LabelConstraint.from_labels(label_words, generator_tokenizer)
sequences = model.generate(input_ids, attention_mask, label_constraint=constraint,
                           max_new_tokens=constraint.max_new_tokens)
predicted = constraint.batch_decode(sequences)                     # raw labels
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

__all__ = ["LabelConstraint", "restrict_to_labels"]


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


@dataclasses.dataclass(frozen=True, eq=False)
class LabelConstraint:
    """A trie over label token sequences.

    Attributes:
        sequences: `{label: token ids}` (without eos); `decode` returns these labels.
        eos_token_id: ends every label.
        pad_token_id: the only token allowed after eos (finished rows of a batch).
        prompt_length: tokens of the sequence that `prefix_allowed_tokens_fn` receives before the first
            generated one: 1 (the decoder start token) for encoder-decoder `generate`, the prompt width for
            decoder-only models (see [`with_prompt_length`]).
    """

    sequences: Mapping[str, tuple[int, ...]]
    eos_token_id: int
    pad_token_id: int
    prompt_length: int = 1
    _next: Mapping[tuple[int, ...], tuple[int, ...]] = dataclasses.field(init=False, repr=False)
    _label_of: Mapping[tuple[int, ...], str] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.sequences:
            raise ValueError("A label constraint needs at least one label.")
        if self.prompt_length < 0:
            raise ValueError(f"`prompt_length` must be >= 0; got {self.prompt_length}.")
        next_tokens: dict[tuple[int, ...], list[int]] = {}
        label_of: dict[tuple[int, ...], str] = {}
        for label, ids in self.sequences.items():
            ids = tuple(int(i) for i in ids)
            if not ids:
                raise ValueError(
                    f"Label {label!r} tokenises to no tokens; give it words the tokenizer knows."
                )
            if self.eos_token_id in ids:
                raise ValueError(
                    f"Label {label!r} contains the eos token {self.eos_token_id}; it would end early."
                )
            if ids in label_of:
                raise ValueError(
                    f"Labels {label_of[ids]!r} and {label!r} tokenise to the same ids {list(ids)}; "
                    "give them words that differ after tokenisation."
                )
            label_of[ids] = label
            for end in range(len(ids) + 1):
                following = ids[end] if end < len(ids) else self.eos_token_id
                allowed = next_tokens.setdefault(ids[:end], [])
                if following not in allowed:
                    allowed.append(following)
        object.__setattr__(self, "_next", {prefix: tuple(ids) for prefix, ids in next_tokens.items()})
        object.__setattr__(self, "_label_of", label_of)

    @classmethod
    def from_labels(
        cls,
        labels: Mapping[str, str] | Sequence[str],
        generator_tokenizer: PreTrainedTokenizerBase,
        prompt_length: int = 1,
    ) -> LabelConstraint:
        """Build the trie from label words: a `{raw label: words}` mapping (as [`verbalize_labels`] returns;
        `decode` then gives raw labels) or a sequence of words (`decode` gives the words)."""
        words = dict(labels) if isinstance(labels, Mapping) else {w: w for w in labels}
        eos = generator_tokenizer.eos_token_id
        if eos is None:
            eos = generator_tokenizer.sep_token_id
        if eos is None:
            raise ValueError(
                "The generator tokenizer has neither `eos_token` nor `sep_token`; set `eos_token`."
            )
        pad = generator_tokenizer.pad_token_id
        ids = generator_tokenizer(list(words.values()), add_special_tokens=False)["input_ids"]
        return cls(
            dict(zip(words, map(tuple, ids), strict=True)), eos, eos if pad is None else pad, prompt_length
        )

    def with_prompt_length(self, prompt_length: int) -> LabelConstraint:
        """The same constraint for sequences whose generated part starts after `prompt_length` tokens."""
        return dataclasses.replace(self, prompt_length=prompt_length)

    @property
    def max_new_tokens(self) -> int:
        """Enough new tokens for the longest label and its eos."""
        return max(len(ids) for ids in self.sequences.values()) + 1

    def allowed_next(self, generated: Sequence[int]) -> list[int]:
        """Tokens allowed after the generated tokens `generated` (no start token or prompt)."""
        generated = tuple(int(i) for i in generated)
        if self.eos_token_id in generated:
            return [self.pad_token_id]
        # A prefix outside the trie only arises if something bypassed the constraint: end it there.
        return list(self._next.get(generated, (self.eos_token_id,)))

    def prefix_allowed_tokens_fn(self, batch_id: int, input_ids: torch.Tensor) -> list[int]:
        """`generate`'s hook: `input_ids` is the sequence so far, the first `prompt_length` tokens not generated."""
        return self.allowed_next(input_ids[self.prompt_length :].tolist())

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The label of one generated sequence (trailing eos and padding dropped)."""
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        if self.eos_token_id in ids:
            ids = ids[: ids.index(self.eos_token_id)]
        while ids and ids[-1] == self.pad_token_id:
            ids.pop()
        label = self._label_of.get(tuple(ids))
        if label is None:
            raise ValueError(
                f"Generated ids {ids} are not a complete label. Decode with `label_constraint=` and "
                f"`max_new_tokens >= {self.max_new_tokens}`."
            )
        return label

    def batch_decode(self, sequences: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(row) for row in sequences]


def restrict_to_labels(
    texts: Sequence[str], label_words: Mapping[str, str], unmatched: str | None = None
) -> list[str]:
    """Map decoded texts back to raw labels through `{raw label: words}` (case and spacing ignored).

    A text that reads as no label becomes `unmatched` (e.g. the negative label, when decoding was not
    constrained); with `unmatched=None` it raises `ValueError` naming the text.
    """
    label_of: dict[str, str] = {}
    for label, words in label_words.items():
        other = label_of.setdefault(_normalise(words), label)
        if other != label:
            raise ValueError(f"Labels {other!r} and {label!r} share the words {words!r}; they must differ.")
    if unmatched is not None and unmatched not in label_words:
        raise ValueError(f"`unmatched={unmatched!r}` is not one of the labels {sorted(label_words)}.")
    out = []
    for position, text in enumerate(texts):
        label = label_of.get(_normalise(text), unmatched)
        if label is None:
            raise ValueError(
                f"Text {position} ({text!r}) is none of the labels' words; decode with a `LabelConstraint`, "
                "or pass `unmatched=` (e.g. the negative label) to map such texts to one label."
            )
        out.append(label)
    return out
