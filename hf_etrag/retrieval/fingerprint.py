"""Fingerprints that tie a passage index to its corpus, to its own files and to the document encoder that built it,
and the checks that use them.

A saved index records (in `index_metadata.json`, see [`PassageIndex.save`]):

- `corpus`: a SHA-256 of the passages' ids, titles and texts; `passage_tokens`: of the document encoder's token ids.
- `embeddings`, `index_faiss`: digests of `embeddings.npy` and `index.faiss` ([`file_digest`]), so that files
  from two different saves never load together.
- `encoder`: the weights fingerprint of the document encoder that encoded the vectors ([`encoder_fingerprint`]),
  set by `refresh_index`; `saved_with_encoder`: that of the encoder saved next to the index (a Trainer checkpoint),
  which may have trained a few steps past the last refresh.

[`index_mismatch`] decides whether an index belongs to a model: its encoder's fingerprint is one of those two, or
the encoder reproduces the stored vectors of a few sample passages (a merged adapter, another dtype or device gives
other weights but the same vectors). [`corpus_mismatch`] compares the corpus with the one the model was saved with
(`config.passage_index`, recorded by `EtragTrainer`).

Weight fingerprints are cheap: the names, shapes and 64 evenly spaced elements of every floating-point tensor,
rounded to bfloat16 (so a float32 and a bfloat16 load of one checkpoint agree; two different models of the same
shape never do), hashed with SHA-256. One transfer from the device; no full pass over the weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

__all__ = [
    "IndexMismatchError",
    "corpus_fingerprint",
    "corpus_mismatch",
    "encoder_fingerprint",
    "file_digest",
    "index_mismatch",
    "tokens_fingerprint",
    "weights_fingerprint",
]

SAMPLES_PER_TENSOR = 64
PROBE_PASSAGES = 8
# Mean cosine between the stored vectors of the probe passages and the current encoder's: below this, the index was
# not built by (an ancestor of) this encoder. 1 - this is the `refresh_staleness` a trained encoder may reach.
PROBE_MIN_COSINE = 0.9
_WHOLE_FILE_BYTES = 64 << 20
_BLOCK_BYTES, _BLOCKS = 64 << 10, 256


class IndexMismatchError(ValueError):
    """A passage index does not belong to the model or corpus it is used with (another encoder, another corpus,
    files from different saves)."""


# ---- corpus ---------------------------------------------------------------------------------------------------------
def _string_digests(column: pa.ChunkedArray) -> list[bytes]:
    """SHA-256 of the lengths and of the bytes of a column read as strings (nulls as ""); independent of chunking."""
    lengths, data = hashlib.sha256(), hashlib.sha256()
    for chunk in column.chunks:
        chunk = pc.fill_null(chunk.cast(pa.large_string()), "")
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        lengths.update(np.diff(offsets).astype("<i8").tobytes())
        data.update(chunk.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
    return [lengths.digest(), data.digest()]


def corpus_fingerprint(corpus: Any) -> str:
    """SHA-256 of a corpus' content: its row count and the `id`, `title` (when present) and `text` columns."""
    table = corpus.data.table if hasattr(corpus.data, "table") else corpus.data
    digest = hashlib.sha256(f"rows={corpus.num_rows}".encode())
    for name in ("id", "title", "text"):
        if name in corpus.column_names:
            digest.update(name.encode())
            for part in _string_digests(_rows_of(corpus, table.column(name))):
                digest.update(part)
    return digest.hexdigest()


def tokens_fingerprint(corpus: Any, column: str) -> str | None:
    """SHA-256 of a token id column (the passages as the document encoder reads them); `None` without it."""
    if column not in corpus.column_names:
        return None
    table = corpus.data.table if hasattr(corpus.data, "table") else corpus.data
    lengths, values = hashlib.sha256(), hashlib.sha256()
    for chunk in _rows_of(corpus, table.column(column)).chunks:
        lengths.update(pc.fill_null(pc.list_value_length(chunk), 0).to_numpy().astype("<i8").tobytes())
        values.update(chunk.flatten().to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    return hashlib.sha256(lengths.digest() + values.digest()).hexdigest()


def _rows_of(corpus: Any, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column in the corpus' row order: a `select`ed or shuffled `Dataset` keeps an indices mapping."""
    mapping = getattr(corpus, "_indices", None)
    if mapping is None:
        return column
    return column.take(mapping.column(0))


# ---- files ----------------------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file up to 64 MiB; of a larger file, its size and 256 evenly spaced 64 KiB blocks (about 16 MiB
    read), which tells files of two different saves apart without reading gigabytes."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"size={size}".encode())
    with path.open("rb") as handle:
        if size <= _WHOLE_FILE_BYTES:
            digest.update(handle.read())
        else:
            for start in np.linspace(0, size - _BLOCK_BYTES, _BLOCKS).astype(np.int64):
                handle.seek(int(start))
                digest.update(handle.read(_BLOCK_BYTES))
    return digest.hexdigest()


# ---- weights --------------------------------------------------------------------------------------------------------
def weights_fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]], **settings: Any) -> str:
    """SHA-256 of `settings` and of each floating-point tensor's name, shape and 64 evenly spaced elements (as
    bfloat16). Tensors that are not floating point (integer buffers, packed quantised weights) are left out."""
    names, samples = [], []
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        if not torch.is_floating_point(tensor):
            continue
        if hasattr(tensor, "full_tensor"):  # a DTensor (FSDP2): every process calls this alike
            tensor = tensor.full_tensor()
        flat = tensor.detach().reshape(-1)
        if flat.numel() == 0:
            continue
        n, count = flat.numel(), min(SAMPLES_PER_TENSOR, flat.numel())
        # Integer arithmetic: a float32 `linspace` over a large tensor rounds its last position past the end.
        positions = torch.arange(count, dtype=torch.int64) * (n - 1) // max(count - 1, 1)
        samples.append(flat[positions.to(flat.device)].to(torch.bfloat16))
        names.append(f"{name}{tuple(tensor.shape)}")
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    digest.update("\n".join(names).encode())
    if samples:
        digest.update(torch.cat([s.cpu() for s in samples]).view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def encoder_fingerprint(model: Any, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The document encoder of an `EtragModel` (unwrapped) as `{"weights": fingerprint, "model_type", "hidden_size"}`:
    its weights with the pooling and similarity that turn its states into passage vectors. `state_dict`: the whole
    model's (a Trainer's gathered state dict), read instead of the live parameters."""
    config = model.config
    encoder = model.document_encoder
    if state_dict is None:
        tensors = list(encoder.state_dict().items())
    else:
        prefix = "query_encoder." if config.shared_encoders else "doc_encoder."
        tensors = [(k[len(prefix) :], v) for k, v in state_dict.items() if k.startswith(prefix)]
    encoder_config = getattr(encoder, "config", None)
    return {
        "weights": weights_fingerprint(tensors, pooling=config.pooling, similarity=config.similarity),
        "model_type": getattr(encoder_config, "model_type", None),
        "hidden_size": getattr(encoder_config, "hidden_size", None),
    }


def _describe(encoder: dict[str, Any]) -> str:
    return f"{encoder.get('model_type')} encoder, size {encoder.get('hidden_size')}, weights {encoder['weights'][:12]}"


# ---- checks ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def _probe_cosine(model: Any, index: Any) -> float:
    """Mean cosine between the stored vectors of up to 8 evenly spread passages and the model's encoding of them
    (eval mode, no gradient, no random numbers drawn)."""
    from .encoding import encode_token_ids

    rows = np.unique(np.linspace(0, len(index) - 1, min(PROBE_PASSAGES, len(index))).round().astype(np.int64))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        fresh = encode_token_ids(
            model.encode_passages, index.retriever_tokens, model.retriever_pad_id, len(rows), device,
            show_progress=False, indices=rows,
        )  # fmt: skip
    finally:
        model.train(was_training)
    stored = index.embeddings[rows]
    if fresh.shape != stored.shape:
        return float("-inf")
    cosine = (fresh * stored).sum(1) / (
        np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1) + 1e-12
    )
    return float(cosine.mean())


def index_mismatch(model: Any, index: Any, fingerprint: dict[str, Any] | None = None) -> str | None:
    """Why `index`'s vectors do not come from `model`'s document encoder, or `None` when they do (or cannot be
    told: an index without a recorded encoder, e.g. vectors given to `set_embeddings` directly).

    Accepted: the encoder's fingerprint is the one that built the vectors or the one saved next to them; else the
    encoder reproduces the stored vectors of a few passages (mean cosine >= 0.9: a stale index of a trained encoder
    passes, one from another encoder does not). `fingerprint`: the model's, when already computed."""
    if index.embeddings is None:
        return None
    hidden = getattr(getattr(model.document_encoder, "config", None), "hidden_size", None)
    if hidden is not None and index.dim != hidden:
        return f"it holds vectors of size {index.dim}, but the model's document encoder makes vectors of size {hidden}"
    recorded = [fp for fp in (index.encoder_fingerprint, index.saved_with_encoder) if fp]
    if not recorded:
        return None
    current = fingerprint or encoder_fingerprint(model)
    if current["weights"] in {fp["weights"] for fp in recorded}:
        return None
    cosine = _probe_cosine(model, index)
    if cosine >= PROBE_MIN_COSINE:
        return None
    built = index.encoder_fingerprint or index.saved_with_encoder
    return (
        f"its vectors were built by another document encoder ({_describe(built)}; this model's: {_describe(current)}),"
        f" and this model's encoder does not reproduce them (mean cosine {cosine:.3f} on "
        f"{min(PROBE_PASSAGES, len(index))} sample passages, below {PROBE_MIN_COSINE}: another encoder, or one "
        "trained far past the last refresh)"
    )


def corpus_mismatch(model: Any, index: Any) -> str | None:
    """Why `index`'s corpus is not the one `model` was saved with (`config.passage_index`, recorded by
    `EtragTrainer`), or `None` when it is or the model records none."""
    expected = getattr(model.config, "passage_index", None)
    if not isinstance(expected, dict) or not expected.get("corpus"):
        return None
    if index.corpus_fingerprint == expected["corpus"]:
        return None
    subset = " (a subset or another corpus inflates or deflates recall)"
    return (
        f"its corpus ({len(index)} passages, content fingerprint {index.corpus_fingerprint[:12]}) is not the one "
        f"the model was saved with ({expected.get('n_passages')} passages, {str(expected['corpus'])[:12]}){subset}"
    )
