"""A passage index: a `datasets.Dataset` corpus tokenised once, its embeddings, and a FAISS index.

The index lives outside the model's module graph (like transformers' `RagRetriever` index) and is swapped
whole by the refresh callback, so a failed refresh never leaves a half-updated index behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from datasets import Dataset, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..atomic import atomic_directory
from .token_store import TokenStore

__all__ = ["PassageIndex", "tokenize_corpus", "validate_corpus"]

RETRIEVER_IDS = "retriever_input_ids"
GENERATOR_IDS = "generator_input_ids"
_METADATA = "index_metadata.json"


def validate_corpus(corpus: Dataset) -> None:
    """Reject corpora that would silently break retrieval, naming the record and the fix."""
    if len(corpus) == 0:
        raise ValueError("The passage corpus is empty: give at least one row with `id`, `title`, `text`.")
    missing = {"id", "text"} - set(corpus.column_names)
    if missing:
        raise ValueError(
            f"The passage corpus lacks column(s) {sorted(missing)}; it needs `id` and `text` "
            f"(and optionally `title`). Columns found: {corpus.column_names}."
        )
    ids = [str(i) for i in corpus["id"]]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise ValueError(
            f"Passage id {duplicate!r} appears more than once in the corpus; ids must be unique."
        )
    for row, text in enumerate(corpus["text"]):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"Passage {ids[row]!r} (row {row}) has no text; drop it or fill its `text` field."
            )


def tokenize_corpus(
    corpus: Dataset,
    retriever_tokenizer: PreTrainedTokenizerBase,
    generator_tokenizer: PreTrainedTokenizerBase | None = None,
    max_passage_length: int = 128,
    num_proc: int | None = None,
) -> Dataset:
    """Add token id columns for the document encoder and the generator (tokenised once, stored in Arrow)."""
    validate_corpus(corpus)
    has_title = "title" in corpus.column_names

    def _tokenize(batch: dict[str, list]) -> dict[str, list]:
        titles = batch["title"] if has_title else None
        out = {}
        pairs = (titles, batch["text"]) if titles is not None else (batch["text"],)
        out[RETRIEVER_IDS] = retriever_tokenizer(*pairs, truncation=True, max_length=max_passage_length)[
            "input_ids"
        ]
        if generator_tokenizer is not None and generator_tokenizer is not retriever_tokenizer:
            texts = [
                f"{t} / {x}" if t else x
                for t, x in zip(titles or [""] * len(batch["text"]), batch["text"], strict=True)
            ]
            out[GENERATOR_IDS] = generator_tokenizer(
                texts, truncation=True, max_length=max_passage_length, add_special_tokens=False
            )["input_ids"]
        return out

    return corpus.map(_tokenize, batched=True, num_proc=num_proc, desc="Tokenising corpus")


class PassageIndex:
    """Passages with token ids, their embeddings and a FAISS index over them.

    Args:
        corpus: a `datasets.Dataset` with `id`, `text` (and `title`) plus the token columns made by
            [`tokenize_corpus`].
        embeddings: `(N, H)` float32 passage vectors, or `None` until [`set_embeddings`] is called.
        index_factory: a FAISS factory string; `"Flat"` (default) is exact inner-product search.
    """

    def __init__(self, corpus: Dataset, embeddings: np.ndarray | None = None, index_factory: str = "Flat"):
        validate_corpus(corpus)
        if RETRIEVER_IDS not in corpus.column_names:
            raise ValueError(
                f"The corpus has no `{RETRIEVER_IDS}` column; run `hf_etrag.tokenize_corpus(corpus, ...)` first."
            )
        self.corpus = corpus
        self.index_factory = index_factory
        self.retriever_tokens = TokenStore.from_arrow(corpus.data.column(RETRIEVER_IDS))
        generator_column = GENERATOR_IDS if GENERATOR_IDS in corpus.column_names else RETRIEVER_IDS
        self.generator_tokens = (
            self.retriever_tokens
            if generator_column == RETRIEVER_IDS
            else TokenStore.from_arrow(corpus.data.column(GENERATOR_IDS))
        )
        self.embeddings: np.ndarray | None = None
        self.faiss_index: faiss.Index | None = None
        self.built_at_step: int | None = None
        if embeddings is not None:
            self.set_embeddings(embeddings)

    def __len__(self) -> int:
        return len(self.corpus)

    @property
    def dim(self) -> int | None:
        return None if self.embeddings is None else int(self.embeddings.shape[1])

    @property
    def passage_ids(self) -> list[str]:
        return [str(i) for i in self.corpus["id"]]

    def set_embeddings(self, embeddings: np.ndarray, step: int | None = None) -> None:
        """Build a new FAISS index from `embeddings` and swap it in (the old one stays usable until then)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self):
            raise ValueError(
                f"Embeddings must have shape (n_passages={len(self)}, dim); got {tuple(embeddings.shape)}."
            )
        index = faiss.index_factory(embeddings.shape[1], self.index_factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(embeddings)
        index.add(embeddings)
        self.embeddings, self.faiss_index, self.built_at_step = embeddings, index, step

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner-product search for `(B, H)` queries; returns `(scores, indices)`, both `(B, k)`."""
        if self.faiss_index is None:
            raise RuntimeError(
                "The index has no embeddings yet: encode the corpus with `hf_etrag.callbacks.refresh_index(model)`, "
                "train with `refresh_steps` > 0 (the refresh callback builds it before the first step), or call "
                "`set_embeddings(...)`."
            )
        if not 1 <= k <= len(self):
            raise ValueError(f"`n_docs` must be between 1 and the corpus size ({len(self)}); got {k}.")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"Query vectors have size {queries.shape[1]} but the index holds vectors of size {self.dim}: "
                "rebuild the index with the current document encoder."
            )
        return self.faiss_index.search(queries, k)

    def save(self, folder: str | os.PathLike) -> None:
        """Write corpus, embeddings, FAISS index and metadata; atomic (temporary sibling, then rename)."""
        with atomic_directory(folder, keep_other_entries=False) as tmp:
            self.corpus.save_to_disk(str(tmp / "corpus"))
            if self.embeddings is not None:
                np.save(tmp / "embeddings.npy", self.embeddings, allow_pickle=False)
                faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
            metadata = {
                "n_passages": len(self),
                "dim": self.dim,
                "index_factory": self.index_factory,
                "built_at_step": self.built_at_step,
            }
            (tmp / _METADATA).write_text(json.dumps(metadata, indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> PassageIndex:
        """Load a folder written by [`save`] (no pickle anywhere)."""
        folder = Path(folder)
        meta_path = folder / _METADATA
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved passage index (no {_METADATA}).")
        metadata: dict[str, Any] = json.loads(meta_path.read_text())
        index = cls(load_from_disk(str(folder / "corpus")), index_factory=metadata["index_factory"])
        if metadata.get("dim") is not None:
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            if embeddings.shape != (metadata["n_passages"], metadata["dim"]):
                raise ValueError(
                    f"{folder}/embeddings.npy has shape {embeddings.shape}, but the metadata says "
                    f"({metadata['n_passages']}, {metadata['dim']}): the index folder is corrupt; rebuild it."
                )
            index.embeddings = embeddings
            index.faiss_index = faiss.read_index(str(folder / "index.faiss"))
            index.built_at_step = metadata.get("built_at_step")
        return index

