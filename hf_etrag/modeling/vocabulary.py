"""Token ids against embedding sizes: a corpus or tokenizer whose ids run past a module's embedding matrix would
fail inside `nn.Embedding` at the first step, or silently read the wrong rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .tokenization import EtragTokenizers

__all__ = ["VocabularyChecksMixin"]


class VocabularyChecksMixin:
    """`check_token_range` and `check_tokenizers` for a model with `query_encoder`, `document_encoder` and
    `generator` parts (mixed into [`EtragModel`])."""

    def check_token_range(
        self, part: Literal["query_encoder", "doc_encoder", "generator"], max_id: int, source: str
    ) -> None:
        """Raise a `ValueError` when token id `max_id` (the largest that `source` produces) lies past `part`'s
        input embedding matrix, naming both sizes and the two fixes."""
        module = {
            "query_encoder": self.query_encoder,
            "doc_encoder": self.document_encoder,
            "generator": self.generator,
        }[part]
        rows = module.get_input_embeddings().num_embeddings
        if max_id >= rows:
            attribute = "query_encoder" if part == "doc_encoder" and self.config.shared_encoders else part
            label = {"query_encoder": "query encoder", "doc_encoder": "document encoder"}.get(part, part)
            raise ValueError(
                f"{source} has token ids up to {max_id}, but the {label} has {rows} token embeddings "
                f"(vocab_size={rows}), so those ids would read past its embedding matrix. Use the {label}'s own "
                f"tokenizer (and re-tokenise the data with it), or grow the embeddings with "
                f"`model.{attribute}.resize_token_embeddings(len(tokenizer))`."
            )

    def check_tokenizers(self, tokenizers: EtragTokenizers) -> None:
        """Check that neither tokenizer can produce ids past the embeddings of the modules it feeds."""
        size = len(tokenizers.retriever)
        for part in ("query_encoder", "doc_encoder"):
            self.check_token_range(part, size - 1, f"The retriever tokenizer ({size} tokens)")
        size = len(tokenizers.generator_tokenizer)
        name = "shared by retriever and generator" if tokenizers.shared else "of the generator"
        self.check_token_range("generator", size - 1, f"The tokenizer {name} ({size} tokens)")
