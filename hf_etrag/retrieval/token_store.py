"""Pre-tokenised passages kept as one flat array plus offsets (Arrow's list layout), so that building a
batch of retrieved passages is array slicing: no Python object per passage and no decode/re-tokenise
round trip inside the training step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

__all__ = ["TokenStore"]


class TokenStore:
    """Variable-length token id sequences stored as `values[offsets[i]:offsets[i + 1]]`."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        if offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError("`offsets` must be a 1-D array with one more entry than sequences.")
        self.values = values
        self.offsets = offsets

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> TokenStore:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if isinstance(array, pa.LargeListArray):
            array = array.cast(pa.list_(array.type.value_type))
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = array.values.to_numpy(zero_copy_only=False).astype(np.int64)
        # A sliced Arrow array keeps absolute offsets into its parent's values.
        return cls(values[offsets[0] : offsets[-1]], offsets - offsets[0])

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> TokenStore:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(offsets[-1]))
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(
        self, indices: Sequence[int] | np.ndarray, pad_id: int, max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded `(input_ids, attention_mask)` for the given sequence indices."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        if max_length is not None:
            lengths = np.minimum(lengths, max_length)
        width = max(1, int(lengths.max(initial=0)))
        # Gather every (row, position) at once: position j of row r reads values[starts[r] + j].
        positions = np.arange(width)[None, :]
        valid = positions < lengths[:, None]
        gather = np.where(valid, starts[:, None] + positions, 0)
        ids = np.where(valid, self.values[gather] if len(self.values) else 0, pad_id)
        return torch.from_numpy(ids), torch.from_numpy(valid.astype(np.int64))
