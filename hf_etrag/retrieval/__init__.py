"""Retrieval: pooling and encoding, pre-tokenised passage storage, and the FAISS passage index."""

from .encoding import PoolingMode, Similarity, encode_token_ids, pool
from .fingerprint import IndexMismatchError
from .index import NonFiniteVectorsError, PassageIndex, tokenize_corpus, validate_corpus
from .token_store import TokenStore

__all__ = [
    "IndexMismatchError",
    "NonFiniteVectorsError",
    "PassageIndex",
    "PoolingMode",
    "Similarity",
    "TokenStore",
    "encode_token_ids",
    "pool",
    "tokenize_corpus",
    "validate_corpus",
]
