"""A passage index: a `datasets.Dataset` corpus tokenised once, its embeddings, and a FAISS index.

The index lives outside the model's module graph (like transformers' `RagRetriever` index) and is swapped
whole by the refresh callback, so a failed refresh never leaves a half-updated index behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from datasets import Dataset, load_from_disk
from huggingface_hub import snapshot_download
from transformers import PreTrainedTokenizerBase

from ..atomic import atomic_directory
from ..files import INDEX_FOLDER, INDEX_OUTPUT
from .fingerprint import IndexMismatchError, corpus_fingerprint, file_digest, tokens_fingerprint
from .search_threads import faiss_threads_for
from .token_store import TokenStore

__all__ = [
    "IndexMismatchError",
    "NonFiniteVectorsError",
    "PassageIndex",
    "tokenize_corpus",
    "validate_corpus",
]

RETRIEVER_IDS = "retriever_input_ids"
GENERATOR_IDS = "generator_input_ids"
_METADATA = "index_metadata.json"


class NonFiniteVectorsError(ValueError):
    """Passage or query vectors hold NaN/inf: FAISS cannot rank them (it returns id -1, which numpy would read as
    the last passage). Raised before anything is stored or searched; the index stays as it was."""


def _nonfinite_rows(vectors: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~np.isfinite(vectors).all(axis=1))


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
            f"Passage id {duplicate!r} appears more than once in the corpus; ids must be unique: drop the "
            "duplicate rows or give them their own ids."
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
        # The document encoder that built the vectors (`hf_etrag.retrieval.fingerprint.encoder_fingerprint`), set by
        # `refresh_index`; and the one saved next to them in a checkpoint (read back by `load`). `None`: unknown.
        self.encoder_fingerprint: dict[str, Any] | None = None
        self.saved_with_encoder: dict[str, Any] | None = None
        self._corpus_fingerprint: str | None = None
        # The embeddings copied to an accelerator for exact search there (`search_on_device`), per device.
        self._device_embeddings: dict[str, torch.Tensor] = {}
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

    @property
    def corpus_fingerprint(self) -> str:
        """SHA-256 of the passages' ids, titles and texts (computed once: the corpus of an index never changes)."""
        if self._corpus_fingerprint is None:
            self._corpus_fingerprint = corpus_fingerprint(self.corpus)
        return self._corpus_fingerprint

    def set_embeddings(
        self,
        embeddings: np.ndarray,
        step: int | None = None,
        encoder: dict[str, Any] | None = None,
        retrain: bool = False,
    ) -> None:
        """Build a new FAISS index from `embeddings` and swap it in (the old one stays usable until then).
        `encoder`: the fingerprint of the document encoder that made them (`refresh_index` passes it), saved with the
        index and checked on load, evaluation and resume. An approximate index (IVF, PQ) keeps its trained quantiser
        across rebuilds unless `retrain` (training it costs about 40 s at a million passages); the first build
        trains it.

        Vectors with NaN/inf raise [`NonFiniteVectorsError`] and leave the index as it was."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self):
            raise ValueError(
                f"Embeddings must have shape (n_passages={len(self)}, dim); got {tuple(embeddings.shape)}."
            )
        bad = _nonfinite_rows(embeddings)
        if len(bad):
            if self.embeddings is None:
                kept = "it still has no embeddings"
            elif self.built_at_step is None:
                kept = "it keeps its earlier embeddings"
            else:
                kept = f"it keeps the embeddings built at step {self.built_at_step}"
            raise NonFiniteVectorsError(
                f"Refusing to index non-finite passage vectors: {len(bad)} of {len(self)} hold NaN/inf (first: "
                f"passage {self.passage_ids[bad[0]]!r}, row {bad[0]}), and FAISS cannot rank them. The index is "
                f"unchanged ({kept}). The document encoder produced them: check its weights for NaN/inf "
                "(`torch.isfinite`), lower the learning rate or encode in float32, then refresh again."
            )
        index = self._reused_quantizer(embeddings) if not retrain else None
        if index is None:
            index = faiss.index_factory(embeddings.shape[1], self.index_factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(embeddings)
        index.add(embeddings)
        self.embeddings, self.faiss_index, self.built_at_step = embeddings, index, step
        self.encoder_fingerprint, self.saved_with_encoder = encoder, None
        self._device_embeddings = {}

    def _reused_quantizer(self, embeddings: np.ndarray) -> faiss.Index | None:
        """An empty copy of the current index, its trained quantiser kept (IVF centroids, PQ codebooks), or `None`
        when there is nothing to reuse (a Flat index needs no training; no index yet; another dimension)."""
        current = self.faiss_index
        if current is None or self.index_factory == "Flat" or current.d != embeddings.shape[1]:
            return None
        index = faiss.clone_index(current)
        index.reset()
        return index

    def search_on_device(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Exact top-`k` inner-product search by a matmul on the queries' device: `(B, k)` row numbers there.

        For a Flat index (the same ranking as FAISS's exact search, ties aside) whose vectors fit on the device: the
        embeddings are copied there once per build. `EtragModel` uses it for queries on an accelerator
        (`config.device_search`)."""
        if self.embeddings is None:
            raise RuntimeError("The index has no embeddings yet: refresh it (`refresh_index(model)`) first.")
        if not 1 <= k <= len(self):
            raise ValueError(f"`n_docs` must be between 1 and the corpus size ({len(self)}); got {k}.")
        key = str(queries.device)
        vectors = self._device_embeddings.get(key)
        if vectors is None:
            vectors = torch.from_numpy(self.embeddings).to(queries.device)
            self._device_embeddings = {key: vectors}  # one device at a time
        if not bool(torch.isfinite(queries).all()):
            raise NonFiniteVectorsError(
                "Query vectors hold NaN/inf, so the index cannot rank passages for them. The query encoder produced "
                "them: check its weights for NaN/inf (`torch.isfinite`; an overflow in half precision)."
            )
        return (queries.float() @ vectors.t()).topk(k, dim=-1).indices

    def device_embeddings(self, device: torch.device) -> torch.Tensor | None:
        """The embeddings already copied to `device` by [`search_on_device`], else `None`."""
        return self._device_embeddings.get(str(device))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner-product search for `(B, H)` queries; returns `(scores, indices)`, both `(B, k)`."""
        if self.faiss_index is None:
            raise RuntimeError(
                "The index has no embeddings yet: encode the corpus with `hf_etrag.training.callbacks.refresh_index(model)`, "
                "train with `refresh_steps` > 0 (the refresh callback builds it before the first step), or call "
                "`set_embeddings(...)`."
            )
        if not 1 <= k <= len(self):
            raise ValueError(
                f"`n_docs` must be between 1 and the corpus size ({len(self)}); got {k}. Lower `n_docs` in the "
                "model config (or the `n_docs=` argument), or add passages to the corpus."
            )
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"Query vectors have size {queries.shape[1]} but the index holds vectors of size {self.dim}: "
                "rebuild the index with the current document encoder."
            )
        bad = _nonfinite_rows(queries)
        if len(bad):
            raise NonFiniteVectorsError(
                f"Query vectors hold NaN/inf ({len(bad)} of {len(queries)} queries, first: row {bad[0]}), so the "
                "index cannot rank passages for them. The query encoder produced them: check its weights for NaN/inf "
                "(`torch.isfinite`; a checkpoint saved after a diverged step, an overflow in half precision)."
            )
        with faiss_threads_for(queries.shape[0] * len(self) * queries.shape[1]):
            scores, ids = self.faiss_index.search(queries, k)
        if (ids < 0).any():
            rows = np.flatnonzero((ids < 0).any(axis=1))
            cause = "its stored vectors are not finite"
            if self.index_factory != "Flat":
                cause += (
                    f", or the approximate `{self.index_factory}` index visited too few (raise its `nprobe`)"
                )
            raise ValueError(
                f"The FAISS index returned no passage (id -1) for {len(rows)} of {len(queries)} queries (first: row "
                f"{rows[0]}) at k={k}: {cause}. Rebuild the index with `refresh_index(model)` (or `set_embeddings`), "
                "or load it again from a saved folder."
            )
        return scores, ids

    def save(self, folder: str | os.PathLike, saved_with_encoder: dict[str, Any] | None = None) -> None:
        """Write corpus, embeddings, FAISS index and metadata; atomic (temporary sibling, then rename).

        The metadata records fingerprints of the corpus, of both vector files and of the document encoder that
        built the vectors (see `hf_etrag.retrieval.fingerprint`); `saved_with_encoder` is the fingerprint of the
        encoder saved next to the index (`EtragTrainer` passes it for its checkpoints). [`load`] checks them.

        `folder` must be new, empty or an earlier saved index (which is replaced; files someone else put there
        stay); any other folder is refused with `hf_etrag.atomic.OutputFolderError`, before anything is written."""
        with atomic_directory(folder, INDEX_OUTPUT) as tmp:
            self.corpus.save_to_disk(str(tmp / "corpus"))
            fingerprints: dict[str, Any] = {
                "corpus": self.corpus_fingerprint,
                "passage_tokens": tokens_fingerprint(self.corpus, RETRIEVER_IDS),
            }
            if self.embeddings is not None:
                np.save(tmp / "embeddings.npy", self.embeddings, allow_pickle=False)
                faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
                fingerprints["embeddings"] = file_digest(tmp / "embeddings.npy")
                fingerprints["index_faiss"] = file_digest(tmp / "index.faiss")
                fingerprints["encoder"] = self.encoder_fingerprint
                fingerprints["saved_with_encoder"] = saved_with_encoder
            metadata = {
                "n_passages": len(self),
                "dim": self.dim,
                "index_factory": self.index_factory,
                "built_at_step": self.built_at_step,
                "fingerprints": fingerprints,
            }
            (tmp / _METADATA).write_text(json.dumps(metadata, indent=2))
        if self.embeddings is not None and saved_with_encoder is not None:
            self.saved_with_encoder = saved_with_encoder

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        subfolder: str = INDEX_FOLDER,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> PassageIndex:
        """Load the index saved in `subfolder` of a model folder or a Hub repo (`push_to_hub(..., push_index=True)`
        uploads it there); a folder that is itself a saved index also works."""
        folder = Path(name_or_path)
        if not folder.is_dir():
            folder = Path(snapshot_download(str(name_or_path), allow_patterns=[f"{subfolder}/*"], revision=revision,
                                            token=token, cache_dir=cache_dir))  # fmt: skip
            if not (folder / subfolder).is_dir():
                raise FileNotFoundError(
                    f"The Hub repo {str(name_or_path)!r} holds no `{subfolder}/`: it was pushed without the index "
                    "(`push_to_hub(..., push_index=True)` uploads it). Build one over your corpus instead."
                )
        return cls.load(folder if (folder / _METADATA).is_file() else folder / subfolder)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> PassageIndex:
        """Load a folder written by [`save`] (no pickle anywhere).

        A missing, truncated or inconsistent file raises a `ValueError` that names the file (not the FAISS,
        numpy or Arrow error it caused, which is chained as the cause); files that were not saved together (a
        corpus, `embeddings.npy` or `index.faiss` from another save) raise [`IndexMismatchError`]. Indexes saved
        before fingerprints were recorded load with the checks their metadata allows."""
        folder = Path(folder)
        meta_path = folder / _METADATA
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved passage index (no {_METADATA}).")
        with _reading(meta_path):
            metadata: dict[str, Any] = json.loads(meta_path.read_text())
            n_passages, dim = int(metadata["n_passages"]), metadata["dim"]
            factory, built_at_step = str(metadata["index_factory"]), metadata.get("built_at_step")
            fingerprints: dict[str, Any] = dict(metadata.get("fingerprints") or {})
        with _reading(folder / "corpus"):
            corpus = load_from_disk(str(folder / "corpus"))
        if len(corpus) != n_passages:
            raise _corrupt(folder / "corpus", f"it has {len(corpus)} rows, the metadata says {n_passages}")
        index = cls(corpus, index_factory=factory)
        if fingerprints.get("corpus") and index.corpus_fingerprint != fingerprints["corpus"]:
            raise _not_saved_together(folder, "corpus", "its passages (ids, titles or texts) differ")
        tokens = fingerprints.get("passage_tokens")
        if tokens and tokens_fingerprint(corpus, RETRIEVER_IDS) != tokens:
            raise _not_saved_together(folder, "corpus", f"its `{RETRIEVER_IDS}` differ")
        if dim is not None:
            with _reading(folder / "embeddings.npy"):
                embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            if embeddings.shape != (n_passages, dim):
                raise _corrupt(
                    folder / "embeddings.npy",
                    f"shape {embeddings.shape}, the metadata says ({n_passages}, {dim})",
                )
            bad = _nonfinite_rows(embeddings)
            if len(bad):
                raise NonFiniteVectorsError(
                    f"{folder / 'embeddings.npy'} holds NaN/inf in {len(bad)} of {n_passages} passage vectors (first: "
                    f"passage {str(corpus[int(bad[0])]['id'])!r}, row {bad[0]}), so the passage index in {folder} "
                    "cannot be searched. Rebuild it with a document encoder whose weights are finite: "
                    "`PassageIndex(corpus)`, `hf_etrag.training.callbacks.refresh_index(model)`, `save(...)` (or "
                    "resume from an earlier checkpoint)."
                )
            _check_digest(folder, "embeddings.npy", fingerprints.get("embeddings"))
            with _reading(folder / "index.faiss"):
                faiss_index = faiss.read_index(str(folder / "index.faiss"))
            if (faiss_index.ntotal, faiss_index.d) != (n_passages, dim):
                raise _corrupt(
                    folder / "index.faiss",
                    f"{faiss_index.ntotal} vectors of size {faiss_index.d}, the metadata says {n_passages} of {dim}",
                )
            _check_digest(folder, "index.faiss", fingerprints.get("index_faiss"))
            if not fingerprints.get("index_faiss") and not _flat_index_holds(faiss_index, embeddings):
                raise _not_saved_together(
                    folder, "index.faiss", "its vectors are not those of embeddings.npy"
                )
            index.embeddings, index.faiss_index, index.built_at_step = embeddings, faiss_index, built_at_step
            index._device_embeddings = {}
            index.encoder_fingerprint = fingerprints.get("encoder")
            index.saved_with_encoder = fingerprints.get("saved_with_encoder")
        return index


def _check_digest(folder: Path, name: str, recorded: str | None) -> None:
    if recorded and file_digest(folder / name) != recorded:
        raise _not_saved_together(folder, name, "its content differs")


def _flat_index_holds(faiss_index: faiss.Index, embeddings: np.ndarray, rows: int = 64) -> bool:
    """Whether an exact (flat) FAISS index stores `embeddings` (checked on up to 64 evenly spread rows); other index
    types store transformed vectors and are not checked here (their saves record a digest instead)."""
    if not isinstance(faiss.downcast_index(faiss_index), faiss.IndexFlat):
        return True
    sample = np.unique(
        np.linspace(0, len(embeddings) - 1, min(rows, len(embeddings))).round().astype(np.int64)
    )
    stored = np.stack([faiss_index.reconstruct(int(row)) for row in sample])
    return bool(np.array_equal(stored, embeddings[sample]))


def _not_saved_together(folder: Path, name: str, reason: str) -> IndexMismatchError:
    return IndexMismatchError(
        f"{folder / name} was not saved together with the rest of the passage index in {folder} ({reason} from what "
        f"{_METADATA} records), so the index would search vectors that do not belong to its passages. Do not mix "
        "files of different saves: load the folder as it was saved, or rebuild it: `PassageIndex(corpus)`, "
        "`hf_etrag.training.callbacks.refresh_index(model)`, `save(...)`."
    )


def _corrupt(path: Path, reason: str) -> ValueError:
    return ValueError(
        f"{path} is corrupt or truncated ({reason}), so the passage index in {path.parent} cannot be loaded. "
        "Rebuild it: `PassageIndex(corpus)`, then `hf_etrag.training.callbacks.refresh_index(model)` and `save(...)` again "
        "(or resume from an earlier checkpoint)."
    )


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn whatever a damaged file makes its reader raise (json, numpy, Arrow and FAISS each have their own
    errors) into one message that names the file and the fix; the original error stays chained."""
    try:
        yield
    except Exception as error:
        first_line = next(iter(str(error).strip().splitlines()), "")[:200]  # FAISS errors run to many lines
        raise _corrupt(path, f"{type(error).__name__}: {first_line}") from error
