"""A saved passage index records fingerprints of its corpus, its vector files and the document encoder that built
it (issue 14, item 3): files of different saves never load together, and an index from another encoder is told
apart from a stale index of the same one."""

import copy
import json
import shutil

import faiss
import numpy as np
import pytest
import torch

from hf_etrag import PassageIndex
from hf_etrag.retrieval.fingerprint import (
    IndexMismatchError,
    corpus_fingerprint,
    encoder_fingerprint,
    index_mismatch,
    weights_fingerprint,
)
from hf_etrag.training.callbacks import refresh_index


def _vectors(n: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _saved(tmp_path, corpus, name: str, seed: int) -> PassageIndex:
    index = PassageIndex(corpus, embeddings=_vectors(len(corpus), seed))
    index.save(tmp_path / name)
    return index


def test_corpus_fingerprint_reads_content_not_layout(tokenized_corpus):
    reordered = tokenized_corpus.select(list(range(len(tokenized_corpus)))[::-1]).select(
        list(range(len(tokenized_corpus)))[::-1]
    )  # same rows, through an indices mapping
    assert corpus_fingerprint(reordered) == corpus_fingerprint(tokenized_corpus)
    edited = tokenized_corpus.map(
        lambda row, i: {"text": row["text"] + ("!" if i == 3 else "")}, with_indices=True
    )
    assert corpus_fingerprint(edited) != corpus_fingerprint(tokenized_corpus)
    subset = tokenized_corpus.select(range(len(tokenized_corpus) - 1))
    assert corpus_fingerprint(subset) != corpus_fingerprint(tokenized_corpus)


def test_index_faiss_from_another_save_of_the_same_shape_does_not_load(tmp_path, tokenized_corpus):
    _saved(tmp_path, tokenized_corpus, "a", seed=0)
    _saved(tmp_path, tokenized_corpus, "b", seed=1)
    shutil.copy(tmp_path / "b" / "index.faiss", tmp_path / "a" / "index.faiss")  # same ntotal and dim
    with pytest.raises(
        IndexMismatchError,
        match=r"a/index.faiss was not saved together with the rest of the passage index in .*a \(its content "
        r"differs from what index_metadata.json records\)",
    ):
        PassageIndex.load(tmp_path / "a")


def test_embeddings_from_another_save_do_not_load(tmp_path, tokenized_corpus):
    _saved(tmp_path, tokenized_corpus, "a", seed=0)
    _saved(tmp_path, tokenized_corpus, "b", seed=1)
    shutil.copy(tmp_path / "b" / "embeddings.npy", tmp_path / "a" / "embeddings.npy")
    with pytest.raises(IndexMismatchError, match=r"a/embeddings.npy was not saved together"):
        PassageIndex.load(tmp_path / "a")


def test_a_corpus_with_other_texts_does_not_load(tmp_path, tokenized_corpus):
    _saved(tmp_path, tokenized_corpus, "a", seed=0)
    edited = tokenized_corpus.map(
        lambda row, i: {"text": row["text"] + ("!" if i == 0 else "")}, with_indices=True
    )
    _saved(tmp_path, edited, "b", seed=0)  # same ids, same length: only a text differs
    shutil.rmtree(tmp_path / "a" / "corpus")
    shutil.copytree(tmp_path / "b" / "corpus", tmp_path / "a" / "corpus")
    with pytest.raises(
        IndexMismatchError,
        match=r"a/corpus was not saved together .* \(its passages \(ids, titles or texts\) differ",
    ):
        PassageIndex.load(tmp_path / "a")


def test_an_index_saved_before_fingerprints_still_checks_a_flat_index_against_its_embeddings(
    tmp_path, tokenized_corpus
):
    folder = tmp_path / "old"
    _saved(tmp_path, tokenized_corpus, "old", seed=0)
    metadata = json.loads((folder / "index_metadata.json").read_text())
    del metadata["fingerprints"]  # as written before issue 14
    (folder / "index_metadata.json").write_text(json.dumps(metadata))
    np.testing.assert_array_equal(PassageIndex.load(folder).embeddings, _vectors(len(tokenized_corpus), 0))
    other = faiss.IndexFlatIP(8)
    other.add(_vectors(len(tokenized_corpus), seed=1))
    faiss.write_index(other, str(folder / "index.faiss"))
    with pytest.raises(IndexMismatchError, match=r"its vectors are not those of embeddings.npy"):
        PassageIndex.load(folder)


def test_weights_fingerprint_tells_models_apart_but_not_dtypes(_base_model):
    encoder = _base_model.query_encoder
    same = weights_fingerprint(encoder.state_dict().items())
    assert weights_fingerprint(copy.deepcopy(encoder).to(torch.bfloat16).state_dict().items()) == same
    other = copy.deepcopy(encoder)
    with torch.no_grad():
        next(other.parameters()).mul_(1.5)
    assert weights_fingerprint(other.state_dict().items()) != same


def test_the_encoder_that_built_an_index_travels_with_it(tmp_path, model_and_index):
    model, index = model_and_index
    refresh_index(model)
    assert index.encoder_fingerprint == encoder_fingerprint(model)
    index.save(tmp_path / "index", saved_with_encoder={"weights": "abc"})
    loaded = PassageIndex.load(tmp_path / "index")
    assert loaded.encoder_fingerprint == index.encoder_fingerprint
    assert loaded.saved_with_encoder == {"weights": "abc"}
    assert index_mismatch(model, loaded) is None


def test_an_index_from_another_encoder_is_told_apart_from_a_stale_one(model_and_index, tokenizer):
    from ..conftest import make_config

    model, index = model_and_index
    refresh_index(model)
    stale = copy.deepcopy(model)  # the same encoder a few small steps later
    with torch.no_grad():
        for parameter in stale.document_encoder.parameters():
            parameter.add_(1e-3 * torch.randn_like(parameter))
    assert encoder_fingerprint(stale) != index.encoder_fingerprint
    assert index_mismatch(stale, index) is None  # its encoder still reproduces the vectors (cosine ~1)

    torch.manual_seed(123)
    from hf_etrag import EtragModel

    other = EtragModel(make_config(tokenizer))  # same shapes, other weights
    other.set_index(index)
    reason = index_mismatch(other, index)
    assert reason is not None and "built by another document encoder" in reason, reason
    assert "does not reproduce them (mean cosine" in reason

    wide = EtragModel(make_config(tokenizer, query_encoder=_wider(model)))
    assert "vectors of size 32, but the model's document encoder makes vectors of size 48" in index_mismatch(
        wide, index
    )


def _wider(model):
    config = copy.deepcopy(model.config.query_encoder)
    config.hidden_size, config.intermediate_size = 48, 96
    return config


def test_vectors_given_directly_have_no_encoder_to_check(model_and_index):
    model, index = model_and_index
    index.set_embeddings(_vectors(len(index), dim=32))
    assert index.encoder_fingerprint is None and index_mismatch(model, index) is None
