import numpy as np
import pytest
from datasets import Dataset

from hf_etrag import PassageIndex, tokenize_corpus
from hf_etrag.retrieval import TokenStore


def test_token_store_batches_match_the_lists():
    rows = [[5, 6, 7], [8], [], [9, 10]]
    store = TokenStore.from_lists(rows)
    ids, mask = store.batch([3, 0, 1], pad_id=0)
    assert ids.tolist() == [[9, 10, 0], [5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert store[2].tolist() == [] and store.lengths.tolist() == [3, 1, 0, 2]


def test_corpus_is_tokenised_once_into_arrow_columns(tokenized_corpus, tokenizer):
    index = PassageIndex(tokenized_corpus)
    first = tokenizer(tokenized_corpus[0]["text"], truncation=True, max_length=48)["input_ids"]
    assert index.retriever_tokens[0].tolist() == first
    assert index.generator_tokens is index.retriever_tokens  # one tokenizer: no second copy


def test_exact_search_save_and_load(tmp_path, tokenized_corpus):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((len(tokenized_corpus), 8)).astype(np.float32)
    index = PassageIndex(tokenized_corpus, embeddings=embeddings, index_factory="Flat")
    queries = embeddings[[3, 10]] * 5.0
    scores, ids = index.search(queries, k=4)
    expected = np.argsort(-(queries @ embeddings.T), axis=1)[:, :4]
    assert ids.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ embeddings.T, expected, 1), rtol=1e-5)

    index.save(tmp_path / "index")
    assert not list((tmp_path).glob(".index.tmp-*")), "the temporary folder is renamed, not left behind"
    loaded = PassageIndex.load(tmp_path / "index")
    assert loaded.search(queries, k=4)[1].tolist() == ids.tolist()
    assert loaded.passage_ids == index.passage_ids


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "corpus is empty"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "Passage id 'a' appears more than once"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "  "}], "Passage 'b' \\(row 1\\) has no text"),
        ([{"id": "a", "body": "x"}], "lacks column\\(s\\) \\['text'\\]"),
    ],
)
def test_bad_corpora_are_rejected_with_the_record_named(tokenizer, rows, message):
    corpus = Dataset.from_list(rows) if rows else Dataset.from_dict({"id": [], "text": []})
    with pytest.raises(ValueError, match=message):
        tokenize_corpus(corpus, tokenizer)


def test_search_rejects_bad_k_and_wrong_dimension(tokenized_corpus):
    index = PassageIndex(tokenized_corpus, embeddings=np.ones((len(tokenized_corpus), 4), np.float32))
    with pytest.raises(ValueError, match="`n_docs` must be between 1 and the corpus size"):
        index.search(np.ones((1, 4), np.float32), k=len(tokenized_corpus) + 1)
    with pytest.raises(ValueError, match="rebuild the index"):
        index.search(np.ones((1, 6), np.float32), k=2)


# ---- NaN/inf vectors are never stored or searched (issue 14) ---------------------------------------------------------


def _vectors(n: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def test_nonfinite_embeddings_are_never_indexed(tokenized_corpus):
    from hf_etrag.retrieval import NonFiniteVectorsError

    good = _vectors(len(tokenized_corpus))
    index = PassageIndex(tokenized_corpus, embeddings=good)
    index.built_at_step = 3
    bad = good.copy()
    bad[2, 1], bad[5, 0] = np.nan, np.inf
    passage = str(tokenized_corpus[2]["id"])
    with pytest.raises(
        NonFiniteVectorsError,
        match=rf"Refusing to index non-finite passage vectors: 2 of {len(good)} hold NaN/inf \(first: passage "
        rf"'{passage}', row 2\).*The index is unchanged \(it keeps the embeddings built at step 3\)",
    ):
        index.set_embeddings(bad, step=4)
    assert index.built_at_step == 3 and np.array_equal(index.embeddings, good)
    assert index.search(good[[4]], k=1)[1].tolist() == [[int(np.argmax(good @ good[4]))]]  # still searchable
    with pytest.raises(NonFiniteVectorsError, match=r"unchanged \(it still has no embeddings\)"):
        PassageIndex(tokenized_corpus, embeddings=bad)


def test_an_index_saved_with_nonfinite_embeddings_does_not_load(tmp_path, tokenized_corpus):
    folder = tmp_path / "index"
    good = _vectors(len(tokenized_corpus))
    PassageIndex(tokenized_corpus, embeddings=good).save(folder)
    bad = good.copy()
    bad[7] = np.nan
    np.save(folder / "embeddings.npy", bad, allow_pickle=False)
    with pytest.raises(
        ValueError,
        match=rf"embeddings.npy holds NaN/inf in 1 of {len(good)} passage vectors \(first: passage "
        rf"'{tokenized_corpus[7]['id']}', row 7\), so the passage index in .* cannot be searched. Rebuild it",
    ):
        PassageIndex.load(folder)


def test_search_never_turns_id_minus_one_into_a_passage(tokenized_corpus):
    import faiss

    from hf_etrag.retrieval import NonFiniteVectorsError

    good = _vectors(len(tokenized_corpus))
    index = PassageIndex(tokenized_corpus, embeddings=good)
    queries = good[:2].copy()
    queries[1, 3] = np.nan  # a query encoder with NaN weights
    with pytest.raises(
        NonFiniteVectorsError, match=r"Query vectors hold NaN/inf \(1 of 2 queries, first: row 1\)"
    ):
        index.search(queries, k=3)
    # A FAISS index whose vectors are NaN (it disagrees with the embeddings): FAISS answers id -1, which numpy
    # would read as the last passage. (Such an index.faiss no longer loads from a saved folder: see
    # test_index_fingerprints.py; here it is swapped in directly.)
    broken = faiss.IndexFlatIP(good.shape[1])
    broken.add(np.full_like(good, np.nan))
    index.faiss_index = broken
    with pytest.raises(
        ValueError, match=r"returned no passage \(id -1\) for 2 of 2 queries \(first: row 0\) at k=3"
    ):
        index.search(good[:2], k=3)


def test_a_forward_never_reads_id_minus_one_as_the_last_passage(model_and_index, qa_train):
    import faiss

    from ..conftest import first_batch

    model, index = model_and_index
    broken = faiss.IndexFlatIP(index.dim)
    broken.add(np.full_like(index.embeddings, np.nan))
    index.faiss_index = broken  # stored vectors gone bad behind the index's back
    with pytest.raises(ValueError, match=r"returned no passage \(id -1\)"):
        model(**first_batch(qa_train))
