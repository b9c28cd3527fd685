"""Paths written for accelerators, checked on the CPU: exact search by matmul on the queries' device, one
device-to-host copy per refresh, refreshes under mixed-precision autocast, and approximate indexes that keep their
trained quantiser across refreshes."""

import copy

import faiss
import numpy as np
import pytest
import torch

from hf_etrag import PassageIndex
from hf_etrag.retrieval.encoding import encode_token_ids
from hf_etrag.training.callbacks import refresh_index, training_autocast_dtype

from ..conftest import first_batch


def test_search_on_device_ranks_as_faiss(model_and_index):
    _, index = model_and_index
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((6, index.dim)).astype(np.float32)
    _, faiss_ids = index.search(queries, 5)
    device_ids = index.search_on_device(torch.from_numpy(queries), 5)
    np.testing.assert_array_equal(device_ids.numpy(), faiss_ids)
    assert index.device_embeddings(torch.device("cpu")) is not None
    index.set_embeddings(index.embeddings.copy())  # a rebuild drops the device copy
    assert index.device_embeddings(torch.device("cpu")) is None


def test_model_uses_device_search_when_asked_and_retrieves_the_same(model_and_index, qa_train, monkeypatch):
    model, index = model_and_index
    model.eval()
    batch = first_batch(qa_train, n=4)
    faiss_output = model(**batch)
    calls = []
    original = PassageIndex.search_on_device
    monkeypatch.setattr(
        PassageIndex, "search_on_device", lambda self, q, k: calls.append(k) or original(self, q, k)
    )
    model.config.device_search = "always"
    device_output = model(**batch)
    assert calls == [model.config.n_docs]
    torch.testing.assert_close(device_output.retrieved_doc_indices, faiss_output.retrieved_doc_indices)
    torch.testing.assert_close(device_output.loss, faiss_output.loss)
    model.config.device_search = "auto"  # the CPU is no accelerator: FAISS again
    model(**batch)
    assert len(calls) == 1


def test_device_search_refuses_nonfinite_queries(model_and_index):
    from hf_etrag.retrieval.index import NonFiniteVectorsError

    _, index = model_and_index
    queries = torch.full((2, index.dim), float("nan"))
    with pytest.raises(NonFiniteVectorsError, match="NaN/inf"):
        index.search_on_device(queries, 3)


def test_one_copy_at_the_end_gives_the_same_vectors(model_and_index):
    model, index = model_and_index
    model.eval()
    kwargs = dict(store=index.retriever_tokens, pad_id=model.retriever_pad_id, batch_size=7, show_progress=False)
    per_batch = encode_token_ids(model.encode_passages, copy_once=False, **kwargs)
    once = encode_token_ids(model.encode_passages, copy_once=True, **kwargs)
    np.testing.assert_array_equal(once, per_batch)


def test_refresh_under_bf16_autocast_stays_close_to_float32(model_and_index):
    model, index = model_and_index
    refresh_index(model)
    full = index.embeddings.copy()
    refresh_index(model, autocast_dtype=torch.bfloat16)
    mixed = index.embeddings
    assert mixed.dtype == np.float32
    cosine = (full * mixed).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(mixed, axis=1))
    assert cosine.min() > 0.99  # bf16 keeps ~3 significant digits
    assert not np.array_equal(full, mixed)  # the autocast really ran in bf16


def test_trainer_precision_chooses_the_refresh_autocast():
    class Args:
        bf16, fp16 = False, False

    args = Args()
    assert training_autocast_dtype(args) is None and training_autocast_dtype(None) is None
    args.bf16 = True
    assert training_autocast_dtype(args) is torch.bfloat16
    args.bf16, args.fp16 = False, True
    assert training_autocast_dtype(args) is torch.float16


def _ivf_index(tokenized_corpus, embeddings):
    return PassageIndex(tokenized_corpus, embeddings=embeddings, index_factory="IVF4,Flat")


def _centroids(index: PassageIndex) -> np.ndarray:
    quantizer = faiss.downcast_index(index.faiss_index).quantizer
    return faiss.rev_swig_ptr(faiss.downcast_index(quantizer).get_xb(), quantizer.ntotal * quantizer.d).copy()


@pytest.mark.parametrize("retrain", [False, True])
def test_refresh_reuses_the_trained_quantizer_unless_asked(tokenized_corpus, retrain):
    rng = np.random.default_rng(0)
    first = rng.standard_normal((len(tokenized_corpus), 16)).astype(np.float32)
    index = _ivf_index(tokenized_corpus, first)
    before = _centroids(index)
    second = rng.standard_normal(first.shape).astype(np.float32)
    index.set_embeddings(second, retrain=retrain)
    assert index.faiss_index.ntotal == len(tokenized_corpus)
    assert np.array_equal(_centroids(index), before) is (not retrain)
    # the rebuilt index holds the new vectors: each finds itself first with every list probed
    faiss.downcast_index(index.faiss_index).nprobe = 4
    _, ids = index.search(second[:5], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))
